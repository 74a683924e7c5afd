/**
 * Placement: where a call runs and which model variant it uses, decided by one rule for the relay
 * (over every node) and for a node (over itself).
 * - figures.ts: the stats key, the sample threshold, the backend priors, a node's figures;
 * - place.ts: the choice among node views for a list of variants (`place`), by one scan;
 * - indexed.ts: the same choice from lists kept sorted as nodes change (`createPlacementIndex`);
 * - route.ts: a call to a service of a manifest → its route (`route`, `modelOf`, `selfView`).
 */
export {
  type BackendName,
  backendOf,
  backendPrior,
  counts,
  execFigure,
  type LatencyFigure,
  minSamples,
  modelFigure,
  modelKey,
  type NodeView,
  priorMs,
  statsKey,
  statsKeyPrefix,
} from './figures';
export { createPlacementIndex, type PlacementIndex } from './indexed';
export { type Placement, type PlacementRequest, place, type VariantInfo } from './place';
export {
  figuresFor,
  modelOf,
  type Route,
  type RouteRequest,
  route,
  type Self,
  selfView,
  variantsOf,
} from './route';
