// Validates an AsyncAPI document with the AsyncAPI project's own parser (specification schema,
// references, its Spectral rules), then every message example against the message's payload and
// headers schemas as the parser resolved them (the parser's rules do not check examples in 3.0).
// Usage: NODE_MODULES=<dir> node validate-asyncapi.cjs docs/asyncapi.yaml
const path = require("path");
const load = (name) => require(path.join(process.env.NODE_MODULES, name));
const { Parser, fromFile } = load("@asyncapi/parser");
const Ajv = load("ajv").default;
const addFormats = load("ajv-formats").default;

const SEVERITY = ["error", "warning", "info", "hint"];

function exampleProblems(document) {
  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats(ajv);
  const problems = [];
  for (const message of document.allMessages()) {
    const examples = message.examples().all();
    if (examples.length === 0) problems.push(`${message.id()}: no example`);
    for (const example of examples) {
      for (const [part, schema] of [["payload", message.payload()], ["headers", message.headers()]]) {
        if (!schema || example[part]() === undefined) continue;
        const validate = ajv.compile(schema.json());
        if (!validate(example[part]())) {
          problems.push(`${message.id()} example ${example.name()} ${part}: ${ajv.errorsText(validate.errors)}`);
        }
      }
    }
  }
  return problems;
}

async function main(file) {
  const { document, diagnostics } = await fromFile(new Parser(), file).parse();
  for (const d of diagnostics) {
    console.log(`${SEVERITY[d.severity]}: ${d.code}: ${d.message} at ${d.path.join(".")}`);
  }
  // Warnings fail too: an integrator's tooling would show them.
  const bad = diagnostics.filter((d) => d.severity <= 1);
  if (!document || bad.length) {
    console.error(`${file}: ${bad.length} error(s) or warning(s)`);
    process.exit(1);
  }
  const problems = exampleProblems(document);
  problems.forEach((p) => console.error(p));
  if (problems.length) process.exit(1);
  console.log(`${file}: valid AsyncAPI ${document.version()}, ${document.channels().length} channels, ` +
              `${document.allMessages().length} messages, every example matches its schemas`);
}

main(process.argv[2]).catch((error) => { console.error(error); process.exit(1); });
