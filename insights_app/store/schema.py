"""The store's tables: what a store of each format version holds, and how a new one is made."""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 2  # 2: the dataset pass's rows and the quality metrics (a store of version 1 gains them)

SCHEMA = """
CREATE TABLE explanations (
    model TEXT NOT NULL, example TEXT NOT NULL, key TEXT NOT NULL, target INTEGER NOT NULL,
    software TEXT NOT NULL, maps BLOB NOT NULL, contributions TEXT NOT NULL, nbytes INTEGER NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (model, example, key, target, software)
) WITHOUT ROWID;
CREATE INDEX explanations_created ON explanations (created);
CREATE TABLE predictions (
    model TEXT NOT NULL, example TEXT NOT NULL, software TEXT NOT NULL,
    indices BLOB NOT NULL, scores BLOB NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (model, example, software)
) WITHOUT ROWID;
"""
SCHEMA_2 = """
CREATE TABLE IF NOT EXISTS pass_rows (
    model TEXT NOT NULL, example TEXT NOT NULL, label INTEGER NOT NULL, software TEXT NOT NULL, loss TEXT NOT NULL,
    top_classes BLOB NOT NULL, top_scores BLOB NOT NULL, label_score REAL, loss_value REAL, created REAL NOT NULL,
    PRIMARY KEY (model, example, label, software, loss)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pass_losses (
    model TEXT NOT NULL, software TEXT NOT NULL, loss TEXT NOT NULL, name TEXT NOT NULL, note TEXT NOT NULL,
    PRIMARY KEY (model, software, loss)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS metrics (
    model TEXT NOT NULL, example TEXT NOT NULL, key TEXT NOT NULL, target INTEGER NOT NULL, software TEXT NOT NULL,
    metric TEXT NOT NULL, value TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (model, example, key, target, software, metric)
) WITHOUT ROWID;
"""


def execute_script(conn: sqlite3.Connection, script: str) -> None:
    """Statements one by one inside the caller's transaction (executescript would commit it)."""
    for statement in script.strip().split(";"):
        if statement.strip():
            conn.execute(statement)
