// Validates ServiceMonitor resources (a JSON array on stdin) against the prometheus-operator CRD
// schema that @kubernetes-models/prometheus-operator ships. Usage: NODE_MODULES=<dir> node validate-servicemonitors.mjs
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const model = join(process.env.NODE_MODULES, "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js");
const { ServiceMonitor } = await import(pathToFileURL(model).href);

let input = "";
for await (const chunk of process.stdin) input += chunk;
const documents = JSON.parse(input);
let failures = 0;
for (const document of documents) {
  try {
    new ServiceMonitor(document).validate();
  } catch (error) {
    failures += 1;
    console.error(`ServiceMonitor ${document.metadata?.name}: ${error.message}`);
  }
}
console.log(`${documents.length - failures}/${documents.length} ServiceMonitor(s) valid against the CRD schema`);
process.exit(failures ? 1 : 0);
