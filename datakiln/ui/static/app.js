// kiln ui: plain JavaScript modules, no build step. Every number and label comes from the JSON
// API; the pages only draw it and send the user's decisions back. This entry names each page's
// module for the router in core.js, which imports no page (so no module imports in a cycle).
import { start } from "./core.js";
import { buildsPage } from "./builds.js";
import { changes } from "./changes.js";
import { example } from "./example.js";
import { gallery } from "./gallery.js";
import { historyPage } from "./history.js";
import { label } from "./label.js";
import { review } from "./review.js";

start({ gallery, example, review, label, changes, history: historyPage, builds: buildsPage });
