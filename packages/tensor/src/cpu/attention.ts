// placeholder
export function registerCpuAttention(): void {}
