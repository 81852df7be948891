// Entry point TensorBoard imports inside the plugin iframe; it calls render().
import { App } from "./app.js";
import css from "./style.css";
import uplotCss from "uplot/dist/uPlot.min.css";

export async function render() {
  const style = document.createElement("style");
  style.textContent = uplotCss + "\n" + css;
  document.head.append(style);
  const root = document.createElement("div");
  root.id = "varmap-root";
  document.body.append(root);
  const app = new App(root);
  window.varmapApp = app; // handy for debugging and browser tests
  await app.start();
}
