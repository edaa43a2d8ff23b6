#!/usr/bin/env bash
# deploy/aws/jitrca.cfn.yaml against the code's operation tables and moto's CloudFormation
# (tests/deploy/cfn.py says what it checks); run under tests/sim/run_sim.py.
exec python3 "$(dirname "$0")/cfn.py"
