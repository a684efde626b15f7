/** Deploys the sample app with Aurora PostgreSQL and runs SELECT 1 through the proxy. */
import { selectOneIntegTest } from './constructs/select-one-integ';

selectOneIntegTest('postgres').synth();
