/**
 * `bench/make-model.ts`: writes a random-weight llama GGUF of a realistic shape so compute-bound figures
 * exist without a download: 28 layers, dim 1,024, FFN 4,096, 16 heads (~470M parameters, the size
 * issue 9 measured), Q8_0 matrices, F32 norms and embeddings, the stories260K tokenizer (its 512-token
 * vocabulary, copied from assets/models/stories260K-chatml.gguf) and a ChatML template.
 *
 * Weights are uniform in about ±0.02 (Q8_0: one f16 scale 0.02/127 and 32 random int8 per block), small
 * enough that activations stay finite through every layer. The output is gibberish at a realistic cost per
 * token, which is all the bench needs.
 *
 * The file goes to `bench/.cache/` (gitignored) and is written once: a later call returns at once when the
 * file exists with the expected size. The writer is ours (header, typed KV metadata, tensor infos, data
 * aligned to 32 bytes), following the GGUF v3 layout in llama.cpp's ggml/include/gguf.h.
 *
 *   npx tsx bench/make-model.ts            # prints the path
 */
import { createCipheriv, createHash } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, renameSync, statSync, writeSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { readGgufFileInfo } from "node-llama-cpp";

const here = path.dirname(fileURLToPath(import.meta.url));
const tokenizerSource = path.resolve(here, "../assets/models/stories260K-chatml.gguf");
export const benchCacheDir = path.resolve(here, ".cache");

export interface ModelShape {
  layers: number;
  dim: number;
  ffn: number;
  heads: number;
  contextLength: number;
  /**
   * Writes a Gemma 2 model (llama.cpp's `gemma2`: sliding-window attention on every other layer, post-norms,
   * the output tied to the embedding) whose window is this many tokens, instead of a llama: what the
   * sliding-window paths of node-llama-cpp (KV checkpoints instead of a plain prefix erase) are tested on.
   */
  slidingWindow?: number;
}

export const realisticShape: ModelShape = {
  layers: 28,
  dim: 1024,
  ffn: 4096,
  heads: 16,
  contextLength: 4096,
};

// GGUF value types (gguf.h).
const UINT32 = 4;
const INT32 = 5;
const FLOAT32 = 6;
const STRING = 8;
const ARRAY = 9;
// ggml tensor types.
const GGML_F32 = 0;
const GGML_Q8_0 = 8;
const ALIGNMENT = 32;
const FILE_TYPE_MOSTLY_Q8_0 = 7;

type Value =
  | { type: typeof UINT32 | typeof INT32 | typeof FLOAT32; value: number }
  | { type: typeof STRING; value: string }
  | {
      type: typeof ARRAY;
      elementType: typeof INT32 | typeof FLOAT32 | typeof STRING;
      value: (string | number)[];
    };

interface Tensor {
  name: string;
  /** ggml order: the row length first. */
  dims: number[];
  type: typeof GGML_F32 | typeof GGML_Q8_0;
  /** What fills F32 tensors (Q8_0 ones are random). */
  fill?: "ones" | "random";
}

/** A growable little-endian byte buffer for the header part of the file. */
class Writer {
  private buffer = Buffer.alloc(1 << 16);
  length = 0;
  private ensure(extra: number): void {
    if (this.length + extra <= this.buffer.length) return;
    const next = Buffer.alloc(Math.max(this.buffer.length * 2, this.length + extra));
    this.buffer.copy(next, 0, 0, this.length);
    this.buffer = next;
  }
  u32(value: number): void {
    this.ensure(4);
    this.buffer.writeUInt32LE(value, this.length);
    this.length += 4;
  }
  i32(value: number): void {
    this.ensure(4);
    this.buffer.writeInt32LE(value, this.length);
    this.length += 4;
  }
  u64(value: number): void {
    this.ensure(8);
    this.buffer.writeBigUInt64LE(BigInt(value), this.length);
    this.length += 8;
  }
  f32(value: number): void {
    this.ensure(4);
    this.buffer.writeFloatLE(value, this.length);
    this.length += 4;
  }
  string(value: string): void {
    const bytes = Buffer.from(value, "utf8");
    this.u64(bytes.length);
    this.ensure(bytes.length);
    bytes.copy(this.buffer, this.length);
    this.length += bytes.length;
  }
  pad(alignment: number): void {
    const padding = (alignment - (this.length % alignment)) % alignment;
    this.ensure(padding);
    this.buffer.fill(0, this.length, this.length + padding);
    this.length += padding;
  }
  bytes(): Buffer {
    return this.buffer.subarray(0, this.length);
  }
}

function writeValue(writer: Writer, value: Value): void {
  writer.u32(value.type);
  switch (value.type) {
    case UINT32:
      writer.u32(value.value);
      return;
    case INT32:
      writer.i32(value.value);
      return;
    case FLOAT32:
      writer.f32(value.value);
      return;
    case STRING:
      writer.string(value.value);
      return;
    case ARRAY:
      writer.u32(value.elementType);
      writer.u64(value.value.length);
      for (const element of value.value) {
        if (value.elementType === STRING) writer.string(String(element));
        else if (value.elementType === INT32) writer.i32(Number(element));
        else writer.f32(Number(element));
      }
  }
}

/** IEEE 754 binary16 bits of a small positive normal number. */
function float16Bits(value: number): number {
  const view = new DataView(new ArrayBuffer(4));
  view.setFloat32(0, value);
  const bits = view.getUint32(0);
  const exponent = ((bits >>> 23) & 0xff) - 127 + 15;
  const mantissa = (bits >>> 13) & 0x3ff;
  if (exponent <= 0 || exponent >= 31) throw new Error(`${value} is not a normal float16`);
  return (exponent << 10) | mantissa;
}

function tensorBytes(tensor: Tensor): number {
  const elements = tensor.dims.reduce((product, dim) => product * dim, 1);
  return tensor.type === GGML_F32 ? elements * 4 : (elements / 32) * 34;
}

function tensorsOf(shape: ModelShape, vocab: number): Tensor[] {
  const { dim, ffn } = shape;
  const gemma = shape.slidingWindow !== undefined;
  const tensors: Tensor[] = [
    { name: "token_embd.weight", dims: [dim, vocab], type: GGML_F32, fill: "random" },
    { name: "output_norm.weight", dims: [dim], type: GGML_F32, fill: "ones" },
    ...(gemma
      ? []
      : [{ name: "output.weight", dims: [dim, vocab], type: GGML_F32, fill: "random" } satisfies Tensor]),
  ];
  for (let layer = 0; layer < shape.layers; layer++) {
    const block = `blk.${layer}`;
    if (gemma)
      tensors.push(
        { name: `${block}.post_attention_norm.weight`, dims: [dim], type: GGML_F32, fill: "ones" },
        { name: `${block}.post_ffw_norm.weight`, dims: [dim], type: GGML_F32, fill: "ones" },
      );
    tensors.push(
      { name: `${block}.attn_norm.weight`, dims: [dim], type: GGML_F32, fill: "ones" },
      { name: `${block}.attn_q.weight`, dims: [dim, dim], type: GGML_Q8_0 },
      { name: `${block}.attn_k.weight`, dims: [dim, dim], type: GGML_Q8_0 },
      { name: `${block}.attn_v.weight`, dims: [dim, dim], type: GGML_Q8_0 },
      { name: `${block}.attn_output.weight`, dims: [dim, dim], type: GGML_Q8_0 },
      { name: `${block}.ffn_norm.weight`, dims: [dim], type: GGML_F32, fill: "ones" },
      { name: `${block}.ffn_gate.weight`, dims: [dim, ffn], type: GGML_Q8_0 },
      { name: `${block}.ffn_down.weight`, dims: [ffn, dim], type: GGML_Q8_0 },
      { name: `${block}.ffn_up.weight`, dims: [dim, ffn], type: GGML_Q8_0 },
    );
  }
  return tensors;
}

/** Parameters of a shape (for the file name and the docs). */
export function parameterCount(shape: ModelShape, vocab = 512): number {
  return tensorsOf(shape, vocab).reduce(
    (sum, tensor) => sum + tensor.dims.reduce((product, dim) => product * dim, 1),
    0,
  );
}

async function headerOf(shape: ModelShape, tensors: Tensor[]): Promise<Buffer> {
  const source = await readGgufFileInfo(tokenizerSource, { readTensorInfo: false });
  const ggml = (source.metadata as { tokenizer: { ggml: Record<string, unknown>; chat_template: string } })
    .tokenizer;
  const tokens = ggml.ggml.tokens as string[];
  const architecture = shape.slidingWindow === undefined ? "llama" : "gemma2";
  const metadata: [string, Value][] = [
    ["general.architecture", { type: STRING, value: architecture }],
    ["general.name", { type: STRING, value: "lmhost-bench-random" }],
    ["general.file_type", { type: UINT32, value: FILE_TYPE_MOSTLY_Q8_0 }],
    ["general.alignment", { type: UINT32, value: ALIGNMENT }],
    [`${architecture}.context_length`, { type: UINT32, value: shape.contextLength }],
    [`${architecture}.embedding_length`, { type: UINT32, value: shape.dim }],
    [`${architecture}.feed_forward_length`, { type: UINT32, value: shape.ffn }],
    [`${architecture}.block_count`, { type: UINT32, value: shape.layers }],
    [`${architecture}.attention.head_count`, { type: UINT32, value: shape.heads }],
    [`${architecture}.attention.head_count_kv`, { type: UINT32, value: shape.heads }],
    [`${architecture}.attention.layer_norm_rms_epsilon`, { type: FLOAT32, value: 1e-5 }],
    [`${architecture}.rope.dimension_count`, { type: UINT32, value: shape.dim / shape.heads }],
    ...(shape.slidingWindow === undefined
      ? []
      : ([
          [`${architecture}.attention.sliding_window`, { type: UINT32, value: shape.slidingWindow }],
          [`${architecture}.attention.key_length`, { type: UINT32, value: shape.dim / shape.heads }],
          [`${architecture}.attention.value_length`, { type: UINT32, value: shape.dim / shape.heads }],
        ] satisfies [string, Value][])),
    ["tokenizer.ggml.model", { type: STRING, value: String(ggml.ggml.model) }],
    ["tokenizer.ggml.tokens", { type: ARRAY, elementType: STRING, value: tokens }],
    ["tokenizer.ggml.scores", { type: ARRAY, elementType: FLOAT32, value: ggml.ggml.scores as number[] }],
    [
      "tokenizer.ggml.token_type",
      { type: ARRAY, elementType: INT32, value: ggml.ggml.token_type as number[] },
    ],
    ["tokenizer.ggml.unknown_token_id", { type: UINT32, value: Number(ggml.ggml.unknown_token_id) }],
    ["tokenizer.ggml.bos_token_id", { type: UINT32, value: Number(ggml.ggml.bos_token_id) }],
    ["tokenizer.ggml.eos_token_id", { type: UINT32, value: Number(ggml.ggml.eos_token_id) }],
    ["tokenizer.chat_template", { type: STRING, value: ggml.chat_template }],
  ];
  const writer = new Writer();
  writer.u32(0x46554747); // "GGUF" little-endian
  writer.u32(3);
  writer.u64(tensors.length);
  writer.u64(metadata.length);
  for (const [key, value] of metadata) {
    writer.string(key);
    writeValue(writer, value);
  }
  let offset = 0;
  for (const tensor of tensors) {
    writer.string(tensor.name);
    writer.u32(tensor.dims.length);
    for (const dim of tensor.dims) writer.u64(dim);
    writer.u32(tensor.type);
    writer.u64(offset);
    offset += tensorBytes(tensor);
    offset += (ALIGNMENT - (offset % ALIGNMENT)) % ALIGNMENT;
  }
  writer.pad(ALIGNMENT);
  return writer.bytes();
}

function expectedSize(headerLength: number, tensors: Tensor[]): number {
  let size = headerLength;
  for (const tensor of tensors) {
    size += tensorBytes(tensor);
    size += (ALIGNMENT - (size % ALIGNMENT)) % ALIGNMENT;
  }
  return size;
}

/**
 * The same pseudo-random bytes on every machine: an AES-128-CTR keystream keyed by the model's name and
 * `weightSeed`. With crypto-random weights each clone wrote a different model, and a greedy decode of one
 * of them produced only tokens without visible text (no deltas to time): figures differed by clone.
 */
export const weightSeed = 1;

function keystream(name: string): (target: Uint8Array) => void {
  const key = createHash("sha256").update(`${name}:${weightSeed}`).digest().subarray(0, 16);
  const cipher = createCipheriv("aes-128-ctr", key, Buffer.alloc(16));
  // Encrypting zeros yields the keystream itself.
  return (target) => target.set(cipher.update(new Uint8Array(target.length)));
}

/** Pseudo-random tensor data, written in chunks of whole Q8_0 blocks. */
function writeTensor(
  fd: number,
  tensor: Tensor,
  amplitude: number,
  fillRandom: (target: Uint8Array) => void,
): number {
  const total = tensorBytes(tensor);
  if (tensor.type === GGML_F32) {
    const values = new Float32Array(total / 4);
    if (tensor.fill === "ones") values.fill(1);
    else {
      const random = new Uint32Array(values.length);
      fillRandom(new Uint8Array(random.buffer));
      for (let index = 0; index < values.length; index++)
        values[index] = ((random[index] ?? 0) / 0xffffffff - 0.5) * 2 * amplitude;
    }
    writeSync(fd, new Uint8Array(values.buffer));
    return total;
  }
  const scale = float16Bits(amplitude / 127);
  const blocksPerChunk = 1 << 16;
  const chunk = Buffer.alloc(blocksPerChunk * 34);
  let written = 0;
  while (written < total) {
    const length = Math.min(chunk.length, total - written);
    fillRandom(chunk.subarray(0, length));
    for (let block = 0; block < length; block += 34) chunk.writeUInt16LE(scale, block);
    writeSync(fd, chunk, 0, length);
    written += length;
  }
  return total;
}

/** Writes the model unless it is already there with the right size; returns its path. */
export async function makeModel(
  shape: ModelShape = realisticShape,
  options: { log?: (line: string) => void; dir?: string } = {},
): Promise<string> {
  const dir = options.dir ?? benchCacheDir;
  const vocab = 512;
  const tensors = tensorsOf(shape, vocab);
  const header = await headerOf(shape, tensors);
  const size = expectedSize(header.length, tensors);
  const millions = Math.round(parameterCount(shape, vocab) / 1e6);
  // The training context is in the name only when it is not the realistic shape's (the bench's file keeps its name).
  const context = shape.contextLength === realisticShape.contextLength ? "" : `-ctx${shape.contextLength}`;
  const file = path.join(
    dir,
    `random-${shape.slidingWindow === undefined ? "llama" : `gemma2-swa${shape.slidingWindow}`}-${millions}M-L${shape.layers}-d${shape.dim}-f${shape.ffn}${context}-q8_0-seed${weightSeed}.gguf`,
  );
  if (existsSync(file) && statSync(file).size === size) return file;
  mkdirSync(dir, { recursive: true });
  options.log?.(`writing ${path.relative(process.cwd(), file)} (${(size / 2 ** 20).toFixed(0)} MiB, once)…`);
  const temporary = `${file}.${process.pid}.tmp`;
  const fd = openSync(temporary, "w");
  try {
    writeSync(fd, header);
    let position = header.length;
    const zeros = Buffer.alloc(ALIGNMENT);
    const random = keystream(path.basename(file));
    for (const tensor of tensors) {
      position += writeTensor(fd, tensor, 0.02, random);
      const padding = (ALIGNMENT - (position % ALIGNMENT)) % ALIGNMENT;
      if (padding > 0) writeSync(fd, zeros, 0, padding);
      position += padding;
    }
  } finally {
    closeSync(fd);
  }
  if (statSync(temporary).size !== size)
    throw new Error(`wrote ${statSync(temporary).size} bytes, expected ${size}`);
  renameSync(temporary, file);
  return file;
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  console.log(await makeModel(realisticShape, { log: (line) => console.error(line) }));
}
