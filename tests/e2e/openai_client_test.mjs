// The official OpenAI Node client (npm package `openai`) against a running
// ternd's OpenAI-compatible API. Run by tests/e2e/openai_e2e_test.cc, which
// starts ternd on the demo LLM and the demo DiT with one API key, and hands
// over the PNGs that gRPC GenerateImage made for the Sneakers asked for below:
//
//   node openai_client_test.mjs --base-url http://127.0.0.1:PORT/v1 --api-key KEY \
//        --model tern-demo-llm --image-model tern-demo-dit --image-pngs a.png,b.png \
//        --modules DIR/node_modules
//
// Prints one line per check and exits 0 when all pass, 1 at the first failure.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { parseArgs } from 'node:util';
import zlib from 'node:zlib';

const { values: args } = parseArgs({
  options: {
    'base-url': { type: 'string' },
    'api-key': { type: 'string' },
    model: { type: 'string' },
    'image-model': { type: 'string' },
    'image-pngs': { type: 'string' },
    modules: { type: 'string' },
  },
});
// The package lives in a git-ignored folder, not beside this script.
const require = createRequire(path.join(path.resolve(args.modules), 'resolve-from-here.js'));
const OpenAI = require('openai');

const client = new OpenAI({ baseURL: args['base-url'], apiKey: args['api-key'], maxRetries: 0, timeout: 60_000 });
const model = args.model;
const question = [{ role: 'user', content: 'What is the history of the printing press?' }];

async function check(name, body) {
  await body();
  console.log(`ok  ${name}`);
}

async function expectError(name, ErrorClass, status, promise, param) {
  await check(name, async () => {
    try {
      await promise;
    } catch (error) {
      assert.ok(error instanceof ErrorClass, `${name}: ${error.constructor.name} ${error.message}`);
      assert.equal(error.status, status);
      assert.equal(typeof error.error?.message, 'string');
      assert.equal(typeof error.error?.type, 'string');
      if (param !== undefined) assert.equal(error.param, param);
      return;
    }
    assert.fail(`${name}: no error`);
  });
}

await check('models.list', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids.sort(), [model, args['image-model']].sort());
});

await check('models.retrieve', async () => {
  const m = await client.models.retrieve(model);
  assert.equal(m.id, model);
  assert.equal(m.object, 'model');
  assert.equal(m.owned_by, 'tern');
});

// Greedy decoding: the streamed text must equal the whole one.
let wholeText;
await check('chat.completions.create', async () => {
  const r = await client.chat.completions.create({ model, messages: question, max_tokens: 8, temperature: 0 });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, model);
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.ok(r.choices[0].message.content.length > 0);
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.ok(r.usage.prompt_tokens > 0);
  assert.ok(r.usage.completion_tokens > 0 && r.usage.completion_tokens <= 8);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  wholeText = r.choices[0].message.content;
});

await check('chat.completions.create stream (include_usage)', async () => {
  const stream = await client.chat.completions.create({
    model, messages: question, max_tokens: 8, temperature: 0, stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let chunks = 0;
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.choices.length === 0) {
      usage = chunk.usage;
      continue;
    }
    assert.equal(usage, null, 'the usage chunk comes last');
    ++chunks;
    text += chunk.choices[0].delta.content ?? '';
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  }
  assert.ok(chunks >= 2, `${chunks} chunks`);
  assert.equal(text, wholeText);
  assert.ok(['stop', 'length'].includes(finish));
  assert.ok(usage && usage.completion_tokens > 0 && usage.total_tokens === usage.prompt_tokens + usage.completion_tokens);
});

await check('chat stream helper (finalChatCompletion)', async () => {
  const runner = client.chat.completions.stream({ model, messages: question, max_tokens: 8, temperature: 0 });
  const final = await runner.finalChatCompletion();
  assert.equal(final.choices[0].message.content, wholeText);
});

await check('chat n=2, seed, stop, logprobs', async () => {
  const r = await client.chat.completions.create({
    model, messages: question, max_tokens: 8, n: 2, seed: 11, temperature: 1.0, stop: ['\n\n'],
    logprobs: true, top_logprobs: 2, presence_penalty: 0.1, frequency_penalty: 0.1, top_p: 0.95,
  });
  assert.equal(r.choices.length, 2);
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1]);
  for (const c of r.choices) {
    assert.ok(c.logprobs.content.length > 0);
    for (const t of c.logprobs.content) {
      assert.equal(typeof t.token, 'string');
      assert.ok(t.logprob <= 0);
      assert.equal(t.top_logprobs.length, 2);
      assert.deepEqual(t.bytes, [...Buffer.from(t.token, 'utf8')]);
    }
  }
  const again = await client.chat.completions.create({
    model, messages: question, max_tokens: 8, n: 2, seed: 11, temperature: 1.0, stop: ['\n\n'],
    logprobs: true, top_logprobs: 2, presence_penalty: 0.1, frequency_penalty: 0.1, top_p: 0.95,
  });
  assert.deepEqual(again.choices.map((c) => c.message.content), r.choices.map((c) => c.message.content),
                   'same seed, same completions');
});

await check('completions.create', async () => {
  const r = await client.completions.create({ model, prompt: 'The history of', max_tokens: 6, temperature: 0, logprobs: 1 });
  assert.equal(r.object, 'text_completion');
  assert.match(r.id, /^cmpl-/);
  assert.ok(r.choices[0].text.length > 0);
  assert.equal(r.choices[0].logprobs.tokens.length, r.usage.completion_tokens);
  assert.equal(r.choices[0].logprobs.tokens.join(''), r.choices[0].text);
  const stream = await client.completions.create({ model, prompt: 'The history of', max_tokens: 6, temperature: 0, stream: true });
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
  assert.equal(text, r.choices[0].text);
});

await check('tern extras: skeleton_of_thought with an outline, priority, top_k', async () => {
  const body = {
    model, messages: question, max_tokens: 12, temperature: 0, stream: true, priority: 5, top_k: 20,
    decoding_mode: 'skeleton_of_thought', sot: { outline: ['Movable type', 'Gutenberg'] },
  };
  let text = '';
  let finish = null;
  for await (const chunk of await client.chat.completions.create(body)) {
    text += chunk.choices[0]?.delta?.content ?? '';
    if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason;
  }
  assert.match(text, /^1\. Movable type /);
  assert.match(text, /\n2\. Gutenberg /);
  assert.ok(['stop', 'length'].includes(finish));
  const whole = await client.chat.completions.create({ ...body, stream: false });
  assert.equal(whole.tern.decoding_mode, 'skeleton_of_thought');
  assert.equal(whole.tern.sot.points, 2);
});

// A PNG decoded far enough to know it is one: chunks with their lengths,
// IHDR, and IDAT that inflates to one filter byte plus the pixels per row.
function decodePng(bytes) {
  assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  let at = 8;
  let header;
  const idat = [];
  for (;;) {
    const length = bytes.readUInt32BE(at);
    const type = bytes.toString('latin1', at + 4, at + 8);
    const data = bytes.subarray(at + 8, at + 8 + length);
    at += 12 + length;
    if (type === 'IHDR') {
      header = { width: data.readUInt32BE(0), height: data.readUInt32BE(4), depth: data[8], color: data[9] };
    } else if (type === 'IDAT') {
      idat.push(data);
    } else if (type === 'IEND') {
      break;
    }
  }
  const channels = { 0: 1, 2: 3, 4: 2, 6: 4 }[header.color];
  const raw = zlib.inflateSync(Buffer.concat(idat));
  assert.equal(header.depth, 8);
  assert.equal(raw.length, header.height * (1 + header.width * channels));
  return header;
}

await check('images.generate: b64_json PNGs equal gRPC GenerateImage\'s for the same seed', async () => {
  const expected = args['image-pngs'].split(',').map((file) => fs.readFileSync(file));
  const r = await client.images.generate({
    model: args['image-model'], class_name: 'Sneaker', n: expected.length, size: '32x32',
    response_format: 'b64_json', seed: 1234, num_inference_steps: 4, guidance_scale: 2, sampler: 'dpm++2m',
  });
  assert.ok(r.created > 0);
  assert.equal(r.data.length, expected.length);
  r.data.forEach((image, i) => {
    const png = Buffer.from(image.b64_json, 'base64');
    const header = decodePng(png);
    assert.equal(header.width, 32);
    assert.equal(header.height, 32);
    assert.ok(png.equals(expected[i]), `image ${i} differs from gRPC's`);
  });
  assert.deepEqual(r.tern.seeds, expected.map((_, i) => 1234 + i));
});
await expectError('images.generate with a size the model does not make: 400', OpenAI.BadRequestError, 400,
  client.images.generate({ model: args['image-model'], class_name: 'Sneaker', size: '1024x1024' }), 'size');
await expectError('images.generate with a text prompt for a class-conditional model: 400', OpenAI.BadRequestError,
  400, client.images.generate({ model: args['image-model'], prompt: 'a red sneaker' }), 'prompt');

await expectError('bad key: 401', OpenAI.AuthenticationError, 401,
  new OpenAI({ baseURL: args['base-url'], apiKey: 'not-a-key-at-all', maxRetries: 0 }).chat.completions.create(
    { model, messages: question, max_tokens: 4 }));
await expectError('unknown model: 404', OpenAI.NotFoundError, 404,
  client.chat.completions.create({ model: 'no-such-model', messages: question, max_tokens: 4 }), 'model');
await expectError('response_format json_object: 400', OpenAI.BadRequestError, 400,
  client.chat.completions.create({ model, messages: question, response_format: { type: 'json_object' } }),
  'response_format');
await expectError('temperature out of range: 400', OpenAI.BadRequestError, 400,
  client.chat.completions.create({ model, messages: question, temperature: 101 }), 'temperature');
await expectError('unknown field: 400', OpenAI.BadRequestError, 400,
  client.chat.completions.create({ model, messages: question, temprature: 0.5 }), 'temprature');
await expectError('stream error before the first chunk: 400', OpenAI.BadRequestError, 400,
  client.chat.completions.create({ model, messages: [], stream: true }), 'messages');

console.log('openai node client: all checks passed');
