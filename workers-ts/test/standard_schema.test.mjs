// Tools whose input is a Standard Schema: zod 4 (a devDependency only), and
// a hand-made schema of the standard's shape.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { z } from "zod";
import { tool } from "../dist/index.js";
import { WorkerProcess } from "./helpers.mjs";

describe("a worker serving zod tools", () => {
  let worker;
  let hello;
  let nextId = 1;
  const id = () => nextId++;
  before(async () => {
    worker = new WorkerProcess("zod.mjs", { env: { FLW_MODE: "shared" } });
    hello = await worker.handshake();
  });
  after(async () => {
    worker.send({ type: "shutdown" });
    assert.equal((await worker.wait()).code, 0);
    worker.kill();
  });

  test("the manifest holds the JSON Schema zod gives for the input", () => {
    const tools = Object.fromEntries(hello.tools.map((t) => [t.name, t]));
    assert.deepStrictEqual(tools.greet.input_schema, z.toJSONSchema(z.object({
      name: z.string().min(1).describe("who to greet"),
      times: z.number().int().min(1).default(1),
      tone: z.enum(["plain", "loud"]).optional(),
    }), { io: "input" }));
    assert.equal(tools.greet.input_schema.type, "object");
    assert.deepStrictEqual(tools.greet.input_schema.required, ["name"]);
    assert.equal(tools.greet.input_schema.properties.name.description, "who to greet");
    assert.deepStrictEqual(tools.parsed.output_schema.required, ["when", "tags"]);
  });

  test("run gets the arguments as the schema parsed them", async () => {
    assert.equal(await worker.result(id(), "greet", { name: "Ann" }), "hello Ann");
    assert.equal(await worker.result(id(), "greet", { name: "Bo", times: 2, tone: "loud" }), "HELLO BO, HELLO BO");
    assert.deepStrictEqual(await worker.result(id(), "parsed", { when: "today" }), { when: 5, tags: [] });
  });

  for (const [args, pattern] of [
    [{ name: "" }, /^invalid arguments for tool "greet": args\.name: Too small: expected string to have >=1 characters?$/],
    [{ name: "Ann", times: 1.5 }, /^invalid arguments for tool "greet": args\.times: Invalid input: expected int, received number$/],
    [{ name: 5, tone: "soft" }, /^invalid arguments for tool "greet": args\.name: .*; args\.tone: .*$/],
    [{}, /args\.name: Invalid input: expected string, received undefined/],
  ]) {
    test(`invalid arguments name the place: ${JSON.stringify(args)}`, async () => {
      const [reply] = await worker.call(id(), "greet", args);
      assert.equal(reply.type, "error");
      assert.equal(reply.kind, "invalid_arguments");
      assert.match(reply.message, pattern);
    });
  }

  test("an async refinement is awaited", async () => {
    assert.equal(await worker.result(id(), "checked_later", { n: 4 }), 2);
    const [reply] = await worker.call(id(), "checked_later", { n: 3 });
    assert.equal(reply.kind, "invalid_arguments");
    assert.match(reply.message, /args\.n: n must be even/);
  });
});

describe("tool() with a Standard Schema", () => {
  /** A minimal Standard Schema of another vendor: an object with one string `s`. */
  function handMade({ withJson = true } = {}) {
    const standard = {
      version: 1,
      vendor: "hand-made",
      validate: (value) =>
        typeof value?.s === "string" ? { value: { s: value.s.trim() } } : { issues: [{ message: "s must be a string", path: [{ key: "s" }] }] },
    };
    if (withJson) {
      standard.jsonSchema = {
        input: ({ target }) => ({ type: "object", properties: { s: { type: "string" } }, required: ["s"], "x-target": target }),
        output: () => ({ type: "object" }),
      };
    }
    return { "~standard": standard };
  }

  test("the JSON Schema comes from ~standard.jsonSchema.input, asked for draft 2020-12", () => {
    const t = tool({ input: handMade(), run: ({ s }) => s });
    assert.deepStrictEqual(t.inputSchema, { type: "object", properties: { s: { type: "string" } }, required: ["s"], "x-target": "draft-2020-12" });
    assert.equal(t.inputStandardSchema["~standard"].vendor, "hand-made");
  });

  test("a Standard Schema without a JSON Schema converter is refused, saying what to do", () => {
    assert.throws(() => tool({ input: handMade({ withJson: false }), run: () => 1 }), {
      name: "TypeError",
      message: /input is a Standard Schema from hand-made that cannot give its JSON Schema .*zod 4\.2 or later/,
    });
  });

  test("the input must describe an object", () => {
    assert.throws(() => tool({ input: z.string(), run: () => 1 }), {
      name: "TypeError",
      message: /input must describe an object \(like z\.object\(\{\.\.\.\}\)\), but its JSON Schema has "type": "string"/,
    });
  });

  test("a schema zod cannot express in JSON Schema is refused at tool()", () => {
    assert.throws(() => tool({ input: z.object({ when: z.date() }), run: () => 1 }), {
      name: "TypeError",
      message: /cannot turn the zod schema of input into JSON Schema/,
    });
  });
});
