/** The detector input sides the ocr app offers (logics/ocr/common/image.ts LEVELS), smallest first. */
export const QUALITY_LEVELS = [160, 320, 480, 640, 960] as const;
/** The side the models' own figures in metrics.json are measured at. */
export const DEFAULT_SIDE = 640;
