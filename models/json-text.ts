/**
 * JSON text as the repository's formatter (biome) keeps it: two-space indent, lists of plain
 * values on one line, a final newline. For the figures files the model scripts write
 * (metrics.json, training.json), so that a rebuild leaves `npm run lint` clean.
 */
export function jsonText(value: unknown): string {
  const text = JSON.stringify(value, null, 2).replace(
    /\[\s+([^[\]{}]*?)\s+\]/g,
    (_, items: string) => `[${items.split(/,\s+/).join(', ')}]`,
  );
  return `${text}\n`;
}
