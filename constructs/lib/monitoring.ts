import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { Construct } from 'constructs';
import type { IDatabaseProxy } from './database-proxy';
import { TidepoolValidationError } from './private/errors';

/**
 * Options for a proxy's default alarms.
 */
export interface DefaultAlarmsOptions {
  /**
   * Actions run when any of the alarms goes into ALARM, for example `new cloudwatch_actions.SnsAction(topic)`.
   *
   * @default - no actions; the alarms only change state
   */
  readonly alarmActions?: cloudwatch.IAlarmAction[];

  /**
   * Actions run when an alarm returns to OK.
   *
   * @default - no actions
   */
  readonly okActions?: cloudwatch.IAlarmAction[];

  /**
   * The writer-unavailable alarm fires when `AvailabilityPercentage` of the writer role (the share of each
   * minute in which the proxy had a writable target, averaged over the tasks) stays below this for
   * `writerUnavailableEvaluationPeriods` minutes in a row. With the defaults it stays quiet through a
   * typical Aurora failover (about 30 s, which the proxy rides out by holding clients for up to the
   * borrow timeout) and fires when the writer is missing for about two minutes.
   *
   * @default 50
   */
  readonly writerAvailabilityThresholdPercent?: number;

  /**
   * How many consecutive one-minute periods writer availability must stay below the threshold.
   *
   * @default 2
   */
  readonly writerUnavailableEvaluationPeriods?: number;

  /**
   * The borrow-timeout alarm fires when, in one minute, at least this many client requests waited the whole
   * borrow timeout without getting a database connection (each of them got an error). It returns to OK
   * after three minutes without that many.
   *
   * @default 1
   */
  readonly borrowTimeoutsThreshold?: number;

  /**
   * The session-pinning alarm fires when more than this share of the proxy's database connections is
   * pinned to client sessions (`DatabaseConnectionsCurrentlySessionPinned` / `DatabaseConnections`, across
   * tasks) for `sessionPinningEvaluationPeriods` minutes in a row. Pinned connections do not multiplex, so a
   * high share means the pool is working as plain per-client connections.
   *
   * @default 50
   */
  readonly sessionPinnedThresholdPercent?: number;

  /**
   * How many consecutive one-minute periods the pinned share must stay above the threshold.
   *
   * @default 5
   */
  readonly sessionPinningEvaluationPeriods?: number;
}

/**
 * The alarms `addDefaultAlarms()` creates.
 */
export interface DefaultAlarms {
  /** The proxy has had no writer for most of several minutes, or no task reports at all. */
  readonly writerUnavailable: cloudwatch.Alarm;
  /** Clients got errors because no database connection came free within the borrow timeout. */
  readonly borrowTimeouts: cloudwatch.Alarm;
  /** Most database connections are pinned to client sessions and no longer multiplex. */
  readonly sessionPinning: cloudwatch.Alarm;
}

/**
 * Options for a proxy's dashboard.
 */
export interface DatabaseProxyDashboardOptions {
  /**
   * The dashboard's name.
   *
   * @default - a name CloudFormation generates
   */
  readonly dashboardName?: string;

  /**
   * The time range the dashboard opens with.
   *
   * @default Duration.hours(3)
   */
  readonly defaultInterval?: Duration;

  /**
   * Alarms shown in a status row at the top.
   *
   * @default - the proxy's default alarms when `addDefaultAlarms()` was called before, otherwise none
   */
  readonly alarms?: cloudwatch.IAlarm[];
}

const MINUTE = Duration.minutes(1);
const WIDGET_HEIGHT = 6;
const HALF_WIDTH = 12;
const THIRD_WIDTH = 8;

export function createDefaultAlarms(scope: Construct, proxy: IDatabaseProxy, options: DefaultAlarmsOptions): DefaultAlarms {
  const writerThreshold = boundedNumber(scope, 'writerAvailabilityThresholdPercent', options.writerAvailabilityThresholdPercent ?? 50, 0, 100);
  const writerPeriods = periodCount(scope, 'writerUnavailableEvaluationPeriods', options.writerUnavailableEvaluationPeriods ?? 2);
  const borrowTimeoutsThreshold = boundedNumber(scope, 'borrowTimeoutsThreshold', options.borrowTimeoutsThreshold ?? 1, 1, Number.MAX_SAFE_INTEGER);
  const pinnedThreshold = boundedNumber(scope, 'sessionPinnedThresholdPercent', options.sessionPinnedThresholdPercent ?? 50, 0, 100);
  const pinningPeriods = periodCount(scope, 'sessionPinningEvaluationPeriods', options.sessionPinningEvaluationPeriods ?? 5);

  const writerUnavailable = new cloudwatch.Alarm(scope, 'WriterUnavailable', {
    metric: proxy.metricAvailabilityPercentage({ period: MINUTE }),
    threshold: writerThreshold,
    comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
    evaluationPeriods: writerPeriods,
    datapointsToAlarm: writerPeriods,
    // Every running task publishes this each minute; silence means no task is running, so no proxy either.
    treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    alarmDescription:
      `Tidepool proxy ${proxy.dbProxyName}: the writer was available less than ${writerThreshold}% of the time ` +
      `for ${writerPeriods} minutes in a row (or no proxy task is reporting). Clients wait up to the borrow timeout, then get errors.`,
  });

  const borrowTimeouts = new cloudwatch.Alarm(scope, 'BorrowTimeouts', {
    metric: proxy.metricDatabaseConnectionsBorrowTimeouts({ period: MINUTE }),
    threshold: borrowTimeoutsThreshold,
    comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    // One bad minute raises it; three good ones in a row clear it, so it does not flap minute by minute.
    evaluationPeriods: 3,
    datapointsToAlarm: 1,
    // The runtime publishes 0 when nothing timed out; no data means no traffic, which cannot time out.
    treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    alarmDescription:
      `Tidepool proxy ${proxy.dbProxyName}: at least ${borrowTimeoutsThreshold} request(s) a minute waited the whole borrow timeout ` +
      'for a database connection and failed. Raise maxConnectionsPercent, shorten transactions or reduce pinning.',
  });

  const pinnedShare = new cloudwatch.MathExpression({
    // Guarded so a proxy with no open database connection reads 0 rather than no data.
    expression: 'IF(connections > 0, 100 * pinned / connections, 0)',
    usingMetrics: {
      pinned: proxy.metricDatabaseConnectionsCurrentlySessionPinned({ period: MINUTE }),
      connections: proxy.metricDatabaseConnections({ period: MINUTE }),
    },
    label: 'Pinned database connections (%)',
    period: MINUTE,
  });
  const sessionPinning = new cloudwatch.Alarm(scope, 'SessionPinning', {
    metric: pinnedShare,
    threshold: pinnedThreshold,
    comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
    evaluationPeriods: pinningPeriods,
    datapointsToAlarm: pinningPeriods,
    treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    alarmDescription:
      `Tidepool proxy ${proxy.dbProxyName}: more than ${pinnedThreshold}% of database connections were pinned to client sessions ` +
      `for ${pinningPeriods} minutes in a row. Look for "pinned" events in the proxy's log to find the statements.`,
  });

  const alarms = { writerUnavailable, borrowTimeouts, sessionPinning };
  for (const alarm of Object.values(alarms)) {
    if (options.alarmActions?.length) alarm.addAlarmAction(...options.alarmActions);
    if (options.okActions?.length) alarm.addOkAction(...options.okActions);
  }
  return alarms;
}

export function createDashboard(
  scope: Construct,
  id: string,
  proxy: IDatabaseProxy,
  options: DatabaseProxyDashboardOptions,
  defaultAlarms: DefaultAlarms | undefined,
): cloudwatch.Dashboard {
  const dashboard = new cloudwatch.Dashboard(scope, id, {
    dashboardName: options.dashboardName,
    defaultInterval: options.defaultInterval ?? Duration.hours(3),
  });
  const alarms = options.alarms ?? (defaultAlarms ? Object.values(defaultAlarms) : []);
  dashboard.addWidgets(
    new cloudwatch.TextWidget({
      markdown: `# Tidepool proxy ${proxy.dbProxyName}\nEndpoint \`${proxy.endpoint}:${proxy.port}\`, metrics in namespace \`${proxy.metricsNamespace}\`.`,
      width: 24,
      height: 2,
    }),
  );
  if (alarms.length > 0) {
    dashboard.addWidgets(new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms, width: 24, height: 3 }));
  }
  dashboard.addWidgets(
    new cloudwatch.GraphWidget({
      title: 'Client connections',
      left: [proxy.metricClientConnections(), proxy.metricClientConnectionsTLS(), proxy.metricClientConnectionsNoTLS()],
      right: [proxy.metricClientConnectionsReceived(), proxy.metricClientConnectionsClosed()],
      width: HALF_WIDTH,
      height: WIDGET_HEIGHT,
    }),
    new cloudwatch.GraphWidget({
      title: 'Database connections',
      left: [
        proxy.metricDatabaseConnections(),
        proxy.metricDatabaseConnectionsCurrentlyBorrowed(),
        proxy.metricDatabaseConnectionsCurrentlySessionPinned(),
        proxy.metricDatabaseConnectionsCurrentlyInTransaction(),
      ],
      right: [proxy.metricMaxDatabaseConnectionsAllowed()],
      width: HALF_WIDTH,
      height: WIDGET_HEIGHT,
    }),
  );
  dashboard.addWidgets(
    new cloudwatch.GraphWidget({
      title: 'Query latency (µs)',
      left: [
        proxy.metricQueryResponseLatency(),
        // Latencies arrive as statistic sets, which carry no percentiles; the maximum is the tail they keep.
        proxy.metricQueryResponseLatency({ statistic: 'Maximum', label: 'QueryResponseLatency (max)' }),
        proxy.metricQueryDatabaseResponseLatency(),
      ],
      right: [proxy.metricQueryRequests()],
      width: THIRD_WIDTH,
      height: WIDGET_HEIGHT,
    }),
    new cloudwatch.GraphWidget({
      title: 'Borrow latency (µs) and timeouts',
      left: [
        proxy.metricDatabaseConnectionsBorrowLatency(),
        proxy.metricDatabaseConnectionsBorrowLatency({ statistic: 'Maximum', label: 'DatabaseConnectionsBorrowLatency (max)' }),
      ],
      right: [proxy.metricDatabaseConnectionsBorrowTimeouts()],
      width: THIRD_WIDTH,
      height: WIDGET_HEIGHT,
    }),
    new cloudwatch.GraphWidget({
      title: 'Writer availability (%)',
      left: [proxy.metricAvailabilityPercentage()],
      leftYAxis: { min: 0, max: 100 },
      width: THIRD_WIDTH,
      height: WIDGET_HEIGHT,
    }),
  );
  dashboard.addWidgets(
    new cloudwatch.GraphWidget({
      title: 'Logins',
      left: [proxy.metricClientConnectionsSetupSucceeded(), proxy.metricClientConnectionsSetupFailedAuth()],
      width: HALF_WIDTH,
      height: WIDGET_HEIGHT,
    }),
    new cloudwatch.GraphWidget({
      title: 'Database connection setup',
      left: [proxy.metricDatabaseConnectionsSetupSucceeded(), proxy.metricDatabaseConnectionsSetupFailed()],
      right: [proxy.metricDatabaseConnectionRequests()],
      width: HALF_WIDTH,
      height: WIDGET_HEIGHT,
    }),
  );
  return dashboard;
}

function boundedNumber(scope: Construct, prop: string, value: number, min: number, max: number): number {
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new TidepoolValidationError(scope, `${prop} must be between ${min} and ${max}, got ${value}.`);
  }
  return value;
}

function periodCount(scope: Construct, prop: string, value: number): number {
  if (!Number.isInteger(value) || value < 1 || value > 60) {
    throw new TidepoolValidationError(scope, `${prop} must be a whole number of minutes from 1 to 60, got ${value}.`);
  }
  return value;
}
