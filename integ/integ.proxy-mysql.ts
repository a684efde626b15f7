/** Deploys the sample app with Aurora MySQL and runs SELECT 1 through the proxy. */
import { selectOneIntegTest } from './constructs/select-one-integ';

selectOneIntegTest('mysql').synth();
