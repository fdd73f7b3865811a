export { createGateway, Gateway, type GatewayOptions, type ListenerInfo } from './gateway';
export { loadConfigFile, parseConfig } from './config/load';
export type * from './config/types';
export type * from './events/events';
export * from './errors';
