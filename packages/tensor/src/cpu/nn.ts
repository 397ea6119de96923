// placeholder
export function registerCpuNn(): void {}
