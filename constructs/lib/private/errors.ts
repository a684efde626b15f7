import { IConstruct } from 'constructs';

/**
 * Thrown when props cannot deploy. aws-cdk-lib's own ValidationError is internal to that package, so this
 * one carries the construct path in its message instead.
 */
export class TidepoolValidationError extends Error {
  constructor(scope: IConstruct, message: string) {
    super(`${scope.node.path}: ${message}`);
    this.name = 'TidepoolValidationError';
  }
}
