// greet-js is a service of one's own, written in JavaScript and served to
// nexo's gateways over NATS: the JSON method greet.js, with the contract of
// examples/greet-go's greet.go: params {"name": string} (1 to 64
// characters), result {"greeting": "Hello, <name>!"}.
//
//   (cd clients/js && npm ci)                                  # once: the NATS client and the schema checker
//   nexo serve --nats-embedded 127.0.0.1:4222                  # a gateway, in another terminal
//   node examples/greet-js/worker.js --nats nats://127.0.0.1:4222 [--prefix nexo]
//   nexo call greet.js name=Ann                                # {"greeting":"Hello, Ann!"}
import { parseArgs } from "node:util";
import { serve } from "../../clients/js/worker.js";

const { values: args } = parseArgs({
  options: { nats: { type: "string", default: "nats://127.0.0.1:4222" }, prefix: { type: "string", default: "nexo" } },
});

// SIGTERM or Ctrl-C: drain (answer what is in hand), then exit 0.
let worker;
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.once(signal, async () => {
    await worker?.stop(); // none yet when the signal came while connecting
    process.exit(0);
  });
}

worker = await serve({
  nats: args.nats,
  prefix: args.prefix,
  log: console,
  methods: {
    "greet.js": {
      summary: "greets a name of 1 to 64 characters",
      // The worker checks every call's params against this before the handler runs.
      params: {
        type: "object",
        properties: { name: { type: "string", minLength: 1, maxLength: 64, description: "who to greet" } },
        required: ["name"],
        additionalProperties: false,
      },
      result: {
        type: "object",
        properties: { greeting: { type: "string" } },
        required: ["greeting"],
        additionalProperties: false,
      },
      idempotent: true,
      examples: [
        { params: { name: "Ann" }, result: { greeting: "Hello, Ann!" } },
        { params: { name: "" }, error: "BAD_PAYLOAD" },
      ],
      handler: ({ name }) => ({ greeting: `Hello, ${name}!` }),
    },
  },
});
console.error(`greet-js: serving greet.js over ${args.nats} (prefix ${args.prefix})`);
