// Build the JavaScript trigger into a component with componentize-js, with
// the runtime's optional features off so it imports only our interfaces.
// node build.mjs SOURCE.js WIT_DIR OUT.wasm
import { componentize } from "@bytecodealliance/componentize-js";
import { writeFile } from "node:fs/promises";

const [source, wit, out] = process.argv.slice(2);
const { component } = await componentize({
  sourcePath: source,
  witPath: wit,
  worldName: "trigger",
  disableFeatures: ["stdio", "random", "clocks", "http", "fetch-event"],
});
await writeFile(out, component);
console.log(`built ${out}: ${component.length} bytes`);
