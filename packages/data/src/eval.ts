// Helpers for evaluating classification (score each label's target) and generation (prompt ids).
import { resolveTemplates, renderPromptTarget } from "./dataset.js";
import { encodePromptTarget, type Example } from "./encode.js";
import { DataError } from "./errors.js";
import { fillTemplate, type Templates } from "./template.js";
import { formatTraits } from "./formats.js";
import { specialIds, type TokenizerLike } from "./tokenizer.js";

/** One label's scoring sequence. */
export interface ClassificationCandidate {
  label: string;
  /** [BOS] + prompt + target(label) + EOS, truncated like training examples. */
  inputIds: number[];
  /** −100 on the prompt, the ids on the target span. */
  labels: number[];
  /** The target span `[targetStart, targetEnd)` of `inputIds` (" {label}" + EOS). */
  targetStart: number;
  targetEnd: number;
}

type RecordFields = Readonly<Record<string, unknown>>;

function recordOf(example: Example | RecordFields): RecordFields {
  if ("inputIds" in example && Array.isArray(example.inputIds)) {
    const rec = (example as Example).record;
    if (!rec) throw new DataError("this example has no record (packed text examples have none)");
    return rec;
  }
  return example as RecordFields;
}

/**
 * For each label, the sequence prompt + target with that label, built exactly as the
 * classification examples are (same templates, tokenization and truncation). Score a label by
 * the summed log-probability of its target span (`labels` ≠ −100 after the shift); the target
 * includes EOS, so a label that is a prefix of another is not favoured.
 * @param example a classification example (its `record`) or a record `{text, ...}`; its own label is ignored.
 * @param options `templates` (a spec's) and `seqLen` (default: no truncation).
 */
export function classificationCandidates(example: Example | RecordFields, labels: readonly string[], tokenizer: TokenizerLike, options: { templates?: Partial<Templates> | null; seqLen?: number } = {}): ClassificationCandidate[] {
  if (labels.length === 0) throw new DataError("classificationCandidates: no labels");
  const traits = formatTraits("classification");
  const templates = resolveTemplates(traits, options.templates)!;
  const special = specialIds(tokenizer);
  const record = recordOf(example);
  return labels.map((label) => {
    const { prompt, target } = renderPromptTarget(traits, templates, { ...record, [traits.labelField!]: label });
    const enc = encodePromptTarget(prompt, target, tokenizer, special, options.seqLen ?? Infinity);
    return { label, inputIds: enc.inputIds, labels: enc.labels, targetStart: enc.promptLength, targetEnd: enc.inputIds.length };
  });
}

/**
 * The prompt ids of a prompt-target record for generation: [BOS] + encode(prompt), as in
 * training; with `maxLength`, the prompt's start is cut (BOS kept), as training truncation does.
 * @param spec the dataset spec (format and templates).
 */
export function promptIds(example: Example | RecordFields, spec: { format: string; templates?: Partial<Templates> | null }, tokenizer: TokenizerLike, options: { maxLength?: number } = {}): number[] {
  const traits = formatTraits(spec.format);
  if (traits.kind !== "prompt-target") throw new DataError(`promptIds: the ${traits.name} format has no prompt template`);
  const templates = resolveTemplates(traits, spec.templates)!;
  const record = recordOf(example);
  const template = traits.promptTemplate ? traits.promptTemplate(templates, record) : templates.prompt;
  const special = specialIds(tokenizer);
  const head = special.bos !== null ? [special.bos] : [];
  let body = tokenizer.encode(fillTemplate(template, record), { addSpecialTokens: false });
  const max = options.maxLength ?? Infinity;
  if (max < head.length + 1) throw new RangeError(`promptIds: maxLength must be ≥ ${head.length + 1}, got ${max}`);
  if (head.length + body.length > max) body = body.slice(body.length - (max - head.length));
  return [...head, ...body];
}
