/** What this tab tells the relay about itself: backends, cores, memory, battery, visibility. */
import type { Capabilities } from '../core/protocol';
import type { Runtime } from '../core/runtime';

interface BatteryLike {
  level: number;
  charging: boolean;
}

export async function tabCapabilities(runtime: Runtime): Promise<Capabilities> {
  const { backends } = await runtime.describe();
  const nav = navigator as Navigator & {
    deviceMemory?: number;
    getBattery?: () => Promise<BatteryLike>;
  };
  const battery = await nav.getBattery?.().catch(() => undefined);
  return {
    backends: backends.map((b) => ({ name: b.name, detail: b.detail.slice(0, 512) })),
    cores: Math.max(1, Math.min(1024, nav.hardwareConcurrency || 1)),
    ...(nav.deviceMemory !== undefined && { memoryGiB: nav.deviceMemory }),
    ...(battery && { battery: { level: battery.level, charging: battery.charging } }),
    visible: document.visibilityState === 'visible',
    agent: nav.userAgent.slice(0, 256),
  };
}
