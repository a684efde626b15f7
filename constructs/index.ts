export * from './lib/database-proxy';
export * from './lib/monitoring';
export * from './lib/proxy-target';
export * from './lib/tls';
