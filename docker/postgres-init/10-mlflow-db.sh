#!/bin/sh
# Runs once, when the postgres volume is first initialised: the MLflow server gets a database of
# its own (Optuna and MLflow both keep an alembic_version table, so they cannot share one).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -c "CREATE DATABASE \"$MLFLOW_DB\""
