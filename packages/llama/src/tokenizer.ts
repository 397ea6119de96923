// Hugging Face tokenizer directories (tokenizer.json + tokenizer_config.json) and chat templates.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";
import { readJsonFile } from "./config.js";

/**
 * What {@link LlamaTokenizer} uses of `@huggingface/tokenizers`' `Tokenizer`, declared here so that
 * our published declarations do not import that package's: its `.d.ts` files use relative imports
 * without extensions, which a consumer type-checking with `skipLibCheck: false` under
 * `moduleResolution: "node16"` rejects (TS2834). The library's `Tokenizer` satisfies it.
 */
export interface HfTokenizer {
  /** The tokenizer model; its vocabulary lists every token string by id. */
  readonly model: { readonly vocab: readonly string[] } | null;
  /** Text → an encoding whose `ids` are the token ids. */
  encode(text: string, options?: { add_special_tokens?: boolean }): { ids: number[] };
  /** Token ids → text. */
  decode(ids: number[], options?: { skip_special_tokens?: boolean }): string;
  /** The id of a token string, or undefined. */
  token_to_id(token: string): number | undefined;
  /** The token string of an id, or undefined. */
  id_to_token(id: number): string | undefined;
}

/** The files a tokenizer directory holds; the first two are required. */
export const TOKENIZER_FILE = "tokenizer.json";
export const TOKENIZER_CONFIG_FILE = "tokenizer_config.json";
export const SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json";
/** transformers ≥ 4.43 saves the chat template in its own file rather than in tokenizer_config.json. */
export const CHAT_TEMPLATE_FILE = "chat_template.jinja";

/** A tokenizer directory or template that cannot be used; the message names the file. */
export class TokenizerError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TokenizerError";
  }
}

/** One chat message, as chat templates expect it (extra fields such as `tool_calls` pass through). */
export interface ChatMessage {
  role: string;
  content: unknown;
  [key: string]: unknown;
}

/** Options of {@link LlamaTokenizer.applyChatTemplate}. */
export interface ChatTemplateOptions {
  /** Append the prompt that opens the assistant's turn (default false). */
  addGenerationPrompt?: boolean;
  /** Return token ids instead of text (default false). The template supplies BOS, so none is added. */
  tokenize?: boolean;
  /** Which template when the config holds several named ones (default "default"). */
  templateName?: string;
  /** More variables for the template (e.g. `tools`, `documents`, `date_string`). */
  context?: Record<string, unknown>;
}

/** Options of {@link LlamaTokenizer.fromJSON}. */
export interface TokenizerSources {
  /** `special_tokens_map.json`, consulted for tokens `tokenizer_config.json` does not name. */
  specialTokensMap?: Record<string, unknown>;
  /** A chat template that overrides the config's (as `chat_template.jinja` does). */
  chatTemplate?: string;
  /** Labels errors (a directory). */
  source?: string;
}

type SpecialRole = "bos_token" | "eos_token" | "unk_token" | "pad_token";
const SPECIAL_ROLES: readonly SpecialRole[] = ["bos_token", "eos_token", "unk_token", "pad_token"];

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** A special token as written in the configs: a string, `{content: ...}` (AddedToken) or null. */
function tokenContent(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (isObject(v) && typeof v["content"] === "string") return v["content"];
  return null;
}

/**
 * A LLaMA-family tokenizer: `@huggingface/tokenizers` for encoding and decoding, and
 * `@huggingface/jinja` for the chat template, configured the way transformers configures them.
 */
export class LlamaTokenizer {
  /** The underlying `@huggingface/tokenizers` tokenizer (typed by what this class uses of it). */
  readonly tokenizer: HfTokenizer;
  /** `tokenizer_config.json` as read. */
  readonly config: Readonly<Record<string, unknown>>;
  /** Special token strings (null when the configs name none). */
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly unkToken: string | null;
  readonly padToken: string | null;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly unkTokenId: number | null;
  readonly padTokenId: number | null;
  /** Number of token ids (highest id + 1, added tokens included); like `len(tokenizer)` in Python. */
  readonly vocabSize: number;

  private readonly source: string;
  private readonly chatTemplateSource: unknown;
  private readonly compiledTemplates = new Map<string, Template>();
  /**
   * `add_bos_token` / `add_eos_token` from the config when either is given (LlamaTokenizerFast
   * then builds its post-processor from them: `[BOS] text [EOS]`), else null: the
   * post-processor in tokenizer.json decides.
   */
  private readonly addTokens: { bos: boolean; eos: boolean } | null;

  private constructor(tokenizer: HfTokenizer, config: Record<string, unknown>, tokens: Record<SpecialRole, string | null>, chatTemplate: unknown, source: string) {
    this.tokenizer = tokenizer;
    this.config = config;
    this.source = source;
    this.chatTemplateSource = chatTemplate;
    this.vocabSize = tokenizer.model?.vocab.length ?? 0;

    const idOf = (role: SpecialRole): number | null => {
      const token = tokens[role];
      if (token === null) return null;
      const id = tokenizer.token_to_id(token);
      if (id === undefined) throw new TokenizerError(`${source}: ${role} ${JSON.stringify(token)} is not in the vocabulary of ${TOKENIZER_FILE}`);
      return id;
    };
    this.bosToken = tokens.bos_token;
    this.eosToken = tokens.eos_token;
    this.unkToken = tokens.unk_token;
    this.padToken = tokens.pad_token;
    this.bosTokenId = idOf("bos_token");
    this.eosTokenId = idOf("eos_token");
    this.unkTokenId = idOf("unk_token");
    this.padTokenId = idOf("pad_token");

    const flag = (key: string, fallback: boolean): boolean => {
      const v = config[key];
      if (v === undefined || v === null) return fallback;
      if (typeof v !== "boolean") throw new TokenizerError(`${source}: ${TOKENIZER_CONFIG_FILE} "${key}" must be true or false, got ${JSON.stringify(v)}`);
      return v;
    };
    const given = typeof config["add_bos_token"] === "boolean" || typeof config["add_eos_token"] === "boolean";
    // LlamaTokenizerFast defaults: add_bos_token true, add_eos_token false.
    this.addTokens = given ? { bos: flag("add_bos_token", true), eos: flag("add_eos_token", false) } : null;
    if (this.addTokens?.bos && this.bosTokenId === null) throw new TokenizerError(`${source}: add_bos_token is true but no bos_token is defined`);
    if (this.addTokens?.eos && this.eosTokenId === null) throw new TokenizerError(`${source}: add_eos_token is true but no eos_token is defined`);
  }

  /**
   * Reads a tokenizer directory: `tokenizer.json` and `tokenizer_config.json` (required),
   * `special_tokens_map.json` and `chat_template.jinja` (if present; the latter wins over a
   * template in the config, as in transformers).
   */
  static fromDir(dir: string): LlamaTokenizer {
    const fail = (file: string) => (problem: string, cause?: unknown) => new TokenizerError(`tokenizer ${join(dir, file)}: ${problem}`, { cause });
    const tokenizerJson = readJsonFile(join(dir, TOKENIZER_FILE), "tokenizer", fail(TOKENIZER_FILE));
    const config = readJsonFile(join(dir, TOKENIZER_CONFIG_FILE), "tokenizer config", fail(TOKENIZER_CONFIG_FILE));
    const mapPath = join(dir, SPECIAL_TOKENS_MAP_FILE);
    const specialTokensMap = existsSync(mapPath) ? readJsonFile(mapPath, "special tokens map", fail(SPECIAL_TOKENS_MAP_FILE)) : undefined;
    if (specialTokensMap !== undefined && !isObject(specialTokensMap)) throw fail(SPECIAL_TOKENS_MAP_FILE)("must be a JSON object");
    const templatePath = join(dir, CHAT_TEMPLATE_FILE);
    const chatTemplate = existsSync(templatePath) ? readFileSync(templatePath, "utf8") : undefined;
    return LlamaTokenizer.fromJSON(tokenizerJson, config, {
      source: dir,
      ...(specialTokensMap !== undefined ? { specialTokensMap } : {}),
      ...(chatTemplate !== undefined ? { chatTemplate } : {}),
    });
  }

  /** Builds a tokenizer from already parsed `tokenizer.json` and `tokenizer_config.json`. */
  static fromJSON(tokenizerJson: unknown, tokenizerConfig: unknown, sources: TokenizerSources = {}): LlamaTokenizer {
    const source = sources.source ?? "tokenizer";
    if (!isObject(tokenizerJson) || !isObject(tokenizerJson["model"])) {
      throw new TokenizerError(`${source}: ${TOKENIZER_FILE} must be a JSON object with a "model" (is it a tokenizers file?)`);
    }
    if (!isObject(tokenizerConfig)) throw new TokenizerError(`${source}: ${TOKENIZER_CONFIG_FILE} must be a JSON object`);

    const map = sources.specialTokensMap ?? {};
    const tokens = {} as Record<SpecialRole, string | null>;
    for (const role of SPECIAL_ROLES) tokens[role] = tokenContent(tokenizerConfig[role]) ?? tokenContent(map[role]);

    // The library reads token strings and decode settings from this config. transformers'
    // default for clean_up_tokenization_spaces is false (since 4.45); the library's is true.
    const libConfig: Record<string, unknown> = { ...tokenizerConfig, clean_up_tokenization_spaces: tokenizerConfig["clean_up_tokenization_spaces"] ?? false };
    for (const role of SPECIAL_ROLES) {
      if (tokens[role] !== null) libConfig[role] = tokens[role];
      else delete libConfig[role];
    }
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(tokenizerJson, libConfig);
    } catch (err) {
      throw new TokenizerError(`${source}: cannot build the tokenizer from ${TOKENIZER_FILE}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    return new LlamaTokenizer(tokenizer, tokenizerConfig, tokens, sources.chatTemplate ?? tokenizerConfig["chat_template"] ?? null, source);
  }

  /**
   * Text → token ids. With `addSpecialTokens` (the default), `add_bos_token` / `add_eos_token`
   * of the config decide BOS/EOS when the config sets either; otherwise the post-processor of
   * tokenizer.json does (as transformers does for each case).
   */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    if (typeof text !== "string") throw new TypeError(`encode: text must be a string, got ${typeof text}`);
    const addSpecialTokens = options.addSpecialTokens ?? true;
    if (!addSpecialTokens || this.addTokens === null) {
      return this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
    }
    const ids = this.tokenizer.encode(text, { add_special_tokens: false }).ids;
    if (this.addTokens.bos) ids.unshift(this.bosTokenId!);
    if (this.addTokens.eos) ids.push(this.eosTokenId!);
    return ids;
  }

  /**
   * Token ids → text. `skipSpecialTokens` drops every token marked special in tokenizer.json,
   * as transformers does — note that byte-fallback tokenizers may mark their `<0x..>` byte
   * tokens special too, so skipping can drop bytes of non-ASCII text; to strip only BOS/EOS/pad,
   * filter those ids yourself. An empty list decodes to "".
   * @throws RangeError for an id that is not an integer in [0, vocabSize).
   */
  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    for (const id of ids) {
      if (!Number.isInteger(id) || this.tokenizer.id_to_token(id) === undefined) {
        throw new RangeError(`decode: token id ${id} is not in the vocabulary (0..${this.vocabSize - 1})`);
      }
    }
    // The library throws on an empty list.
    if (ids.length === 0) return "";
    return this.tokenizer.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? false });
  }

  /** The id of a token string, or undefined. */
  tokenToId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  /** The token string of an id, or undefined. */
  idToToken(id: number): string | undefined {
    return this.tokenizer.id_to_token(id);
  }

  /** Whether a chat template is available (from the config or chat_template.jinja). */
  get hasChatTemplate(): boolean {
    return this.chatTemplateSource !== null && this.chatTemplateSource !== undefined;
  }

  /**
   * Renders messages with the model's chat template, as transformers' `apply_chat_template`:
   * the template sees `messages`, `add_generation_prompt` and the special token strings
   * (`bos_token`, `eos_token`, `unk_token`, `pad_token`), plus `options.context`. With
   * `tokenize`, the text is encoded without adding special tokens (the template holds them).
   */
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions & { tokenize: true }): number[];
  applyChatTemplate(messages: readonly ChatMessage[], options?: ChatTemplateOptions & { tokenize?: false }): string;
  applyChatTemplate(messages: readonly ChatMessage[], options?: ChatTemplateOptions): string | number[];
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string | number[] {
    if (!Array.isArray(messages)) throw new TypeError("applyChatTemplate: messages must be an array of {role, content}");
    messages.forEach((m, i) => {
      if (!isObject(m) || typeof m.role !== "string") throw new TypeError(`applyChatTemplate: message ${i} must be an object with a string "role"`);
    });
    const template = this.template(options.templateName ?? "default");
    const vars: Record<string, unknown> = {};
    for (const [role, value] of [["bos_token", this.bosToken], ["eos_token", this.eosToken], ["unk_token", this.unkToken], ["pad_token", this.padToken]] as const) {
      if (value !== null) vars[role] = value;
    }
    Object.assign(vars, options.context ?? {}, { messages, add_generation_prompt: options.addGenerationPrompt ?? false });
    let text: string;
    try {
      text = template.render(vars);
    } catch (err) {
      throw new TokenizerError(`${this.source}: the chat template failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    return options.tokenize ? this.encode(text, { addSpecialTokens: false }) : text;
  }

  /** The compiled chat template of this name (a config may hold a list of `{name, template}`). */
  private template(name: string): Template {
    const cached = this.compiledTemplates.get(name);
    if (cached) return cached;
    const src = this.chatTemplateSource;
    if (src === null || src === undefined) {
      throw new TokenizerError(`${this.source}: no chat template (neither "chat_template" in ${TOKENIZER_CONFIG_FILE} nor ${CHAT_TEMPLATE_FILE})`);
    }
    let text: string;
    if (typeof src === "string") {
      text = src;
    } else if (Array.isArray(src)) {
      const named = src.find((t) => isObject(t) && t["name"] === name);
      if (!named || typeof named["template"] !== "string") {
        const names = src.map((t) => (isObject(t) ? JSON.stringify(t["name"]) : "?")).join(", ");
        throw new TokenizerError(`${this.source}: no chat template named ${JSON.stringify(name)} (the config has: ${names})`);
      }
      text = named["template"];
    } else {
      throw new TokenizerError(`${this.source}: "chat_template" must be a string or a list of {name, template}, got ${typeof src}`);
    }
    let compiled: Template;
    try {
      compiled = new Template(text);
    } catch (err) {
      throw new TokenizerError(`${this.source}: the chat template does not parse: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    this.compiledTemplates.set(name, compiled);
    return compiled;
  }
}
