// A table keyed by (name, device), where a device's lookup falls back to its family: the op
// registry (op → kernel) and the quantized format table (format → kernels) are both one of these.

/** The family part of a device name, without validating it (lookups of any string just miss). */
export function familyOf(device: string): string {
  const name = String(device);
  const colon = name.indexOf(":");
  return colon < 0 ? name : name.slice(0, colon);
}

/**
 * Entries registered under a device name (`cuda:1`) or a family (`cuda`, serving every device of
 * the family that has no entry of its own). Registering the same (name, device) twice is an error.
 */
export class DeviceTable<V> {
  private readonly entries = new Map<string, V>();

  /** `what` names the registration in the duplicate error (`registerKernel: a kernel for op 'add'`). */
  constructor(private readonly what: (name: string) => string) {}

  private static key(name: string, device: string): string {
    return `${name}\u0000${device}`;
  }

  set(name: string, device: string, value: V): void {
    const k = DeviceTable.key(name, device);
    if (this.entries.has(k)) throw new Error(`${this.what(name)} on backend '${device}' is already registered`);
    this.entries.set(k, value);
  }

  /** The entry for `device`, else its family's. */
  find(name: string, device: string): V | undefined {
    const own = this.entries.get(DeviceTable.key(name, device));
    if (own !== undefined) return own;
    const family = familyOf(device);
    return family === device ? undefined : this.entries.get(DeviceTable.key(name, family));
  }

  /** Names with an entry for `device` (its own or its family's), sorted. */
  namesOn(device: string): string[] {
    const family = familyOf(device);
    const out = new Set<string>();
    for (const k of this.entries.keys()) {
      const [name, d] = k.split("\u0000");
      if (d === device || d === family) out.add(name!);
    }
    return [...out].sort();
  }

  /** The devices and families `name` is registered under. */
  devicesOf(name: string): string[] {
    return [...this.entries.keys()].map((k) => k.split("\u0000")).filter(([n]) => n === name).map(([, d]) => d!);
  }
}
