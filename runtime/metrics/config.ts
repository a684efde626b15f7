/**
 * Proposed config fields for the admin port, metrics and AWS client settings, as zod schemas
 * the lead can spread into configSchema (runtime/config/schema.ts) without copying them:
 *
 *   admin: adminConfigSchema.default(() => adminConfigSchema.parse({})),
 *   metrics: metricsConfigSchema.default(() => metricsConfigSchema.parse({})),
 *   aws: awsConfigSchema.default({}),
 *
 * Like schema.ts, this module imports only zod: the construct library can import it.
 */
import { z } from 'zod';

export const adminConfigSchema = z.strictObject({
  /** @default "0.0.0.0" (the NLB health check and Prometheus reach it from outside the task) */
  host: z.string().min(1).default('0.0.0.0'),
  /** /healthz, /readyz, /metrics, /status. 0 picks a free port. @default 8080 */
  port: z.number().int().min(0).max(65535).default(8080),
});

export const metricsConfigSchema = z.strictObject({
  /** Push to CloudWatch with PutMetricData. Prometheus /metrics is served either way. @default true */
  enabled: z.boolean().default(true),
  /** CloudWatch namespace; "AWS/..." is reserved by CloudWatch. @default "Tidepool" */
  namespace: z
    .string()
    .min(1)
    .max(255)
    .refine((n) => !n.startsWith('AWS/'), 'namespaces starting with "AWS/" are reserved by CloudWatch')
    .default('Tidepool'),
  /** Seconds between pushes; RDS Proxy reports every 60. @default 60 */
  publishIntervalSeconds: z.number().int().min(1).max(3600).default(60),
  /** Adds the ProxyName+EndpointName dimension set to client-side metrics. @default none */
  endpointName: z.string().min(1).max(255).optional(),
});

export const awsConfigSchema = z.strictObject({
  /** @default the SDK's lookup (AWS_REGION; on Fargate the task's region) */
  region: z.string().min(1).optional(),
  /** Overrides the CloudWatch endpoint URL, for local testing. */
  endpoint: z.url().optional(),
});

export type AdminConfig = z.output<typeof adminConfigSchema>;
export type MetricsConfig = z.output<typeof metricsConfigSchema>;
export type AwsConfig = z.output<typeof awsConfigSchema>;
