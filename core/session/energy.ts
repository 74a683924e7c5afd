/**
 * The network and energy model of a session's frames (seed 004 §2.1, Nimbus): the time to upload
 * one frame over a link shared by the node's sessions, and the radio energy that upload costs the
 * device. Download is ignored, as in the seed.
 * @example const net = transferMs(33_000, sharedMbps(300, 2)) + rttMs;  // Lt = d/BW + RTT
 *          const mj = uploadEnergyMj(net, WIFI_MJ_PER_MS);                // B = Lt · w
 */

/** Radio power of a phone on Wi-Fi, mJ per ms of transfer (the seed's w). */
export const WIFI_MJ_PER_MS = 1.21;
/** Radio power on 4G, mJ per ms. */
export const LTE_MJ_PER_MS = 2.5;

/** Milliseconds to send `bytes` at `mbps` megabits per second (10^6 bits). */
export function transferMs(bytes: number, mbps: number): number {
  return (bytes * 8) / (mbps * 1000);
}

/** A node's link rate shared fairly by its `load` sessions and one more (R / (load + 1)). */
export function sharedMbps(mbps: number, load: number): number {
  return mbps / (load + 1);
}

/** The device's energy to keep its radio up for `netMs` (B = Lt · w), in mJ. */
export function uploadEnergyMj(netMs: number, radioMjPerMs: number): number {
  return netMs * radioMjPerMs;
}
