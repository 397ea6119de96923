// placeholder
export function registerCpuLoss(): void {}
