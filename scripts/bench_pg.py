#!/usr/bin/env python3
"""PostgreSQL requery baseline for the GitHub UserProfile product (solution 1 of the design:
keep the tables in a database, and after every change re-query the documents it affects).

Input: a folder written by `denorm bench export` (schema.json, one CSV per source with the
snapshot, changes.jsonl with one change per Kafka record, in produce order). Against a running
PostgreSQL server (scripts/bench.sh starts a private one):

1. creates the tables with their primary keys, loads the CSVs with COPY, creates the indexes the
   profile query needs, ANALYZE;
2. builds every profile with one query (correlated json_agg subqueries, one document per user,
   written as denorm writes it: the same fields, order and value formats) and reads all of them:
   the hydration time (with --documents, also written to a file, to compare with denorm's);
3. applies the first --changes changes one by one, each in its own transaction: read the old row,
   upsert or delete, find the profiles the old and the new row belong to, re-query them; the
   latency of a change is the time from its start to its profiles being read. One connection,
   back to back (flat out). Changes re-querying at most 10 profiles are small, the others
   fan-out; both are reported apart.

Prints one JSON object.
"""

import argparse
import json
import sys
import time
from pathlib import Path

try:
    import psycopg
except ImportError:  # pragma: no cover - the harness installs it
    sys.exit("bench_pg.py needs psycopg: pip install 'psycopg[binary]'")

TYPES = {
    "string": "text",
    "int": "bigint",
    "float": "double precision",
    "bool": "boolean",
    "decimal": "numeric",
    "date": "date",
    "time": "time",
    "timestamp": "timestamptz",
    "json": "jsonb",
}

# The profile of dataflows/github_user_profile.toml, written as denorm writes it (README,
# "Product files" and "Input"): fields in declared order; lists in order_by order, ties broken by
# the whole item in output order, ascending with nulls first, strings by their bytes (COLLATE
# "C"); timestamps as RFC 3339 UTC strings (denorm_ts). So its documents can be compared with
# denorm's by content (`denorm bench compare-documents`).
PROFILE = """
SELECT u.email, json_build_object(
  'email', u.email,
  'username', u.username,
  'starred_repos', COALESCE((
      SELECT json_agg(json_build_object('repo', r.name, 'description', r.description)
                      ORDER BY r.name COLLATE "C" NULLS FIRST, r.description COLLATE "C" NULLS FIRST)
      FROM stars s JOIN repos r ON r.owner = s.repo_owner AND r.name = s.repo_name
      WHERE s.username = u.username), '[]'::json),
  'pull_requests', COALESCE((
      SELECT json_agg(json_build_object('repo', p.repo, 'index', p."index", 'title', p.title,
                                        'created_at', denorm_ts(p.created_at), 'status', p.status)
                      ORDER BY p.created_at NULLS FIRST, p.repo COLLATE "C" NULLS FIRST,
                               p."index" NULLS FIRST, p.title COLLATE "C" NULLS FIRST,
                               p.status COLLATE "C" NULLS FIRST)
      FROM pull_requests p WHERE p.author = u.username), '[]'::json),
  'payment_verified', (SELECT pi.verified FROM payment_info pi WHERE pi.id = u.id
                       ORDER BY pi.verified NULLS FIRST LIMIT 1)
)::text
FROM users u
"""

# A timestamp as denorm writes it: 2022-08-15T08:53:57Z, with .123 when the fraction is whole
# milliseconds and .123456 otherwise.
DENORM_TS = """
CREATE OR REPLACE FUNCTION denorm_ts(t timestamptz) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') ||
    CASE WHEN extract(microseconds FROM t)::bigint % 1000000 = 0 THEN ''
         WHEN extract(microseconds FROM t)::bigint % 1000 = 0 THEN '.' || to_char(t AT TIME ZONE 'UTC', 'MS')
         ELSE '.' || to_char(t AT TIME ZONE 'UTC', 'US') END || 'Z'
$$
"""

# Changes whose re-query reads more profiles than this are fan-out changes (as denorm's report
# splits at 10 documents).
SMALL_CHANGE_PROFILES = 10

INDEXES = [
    "CREATE INDEX ON users (username)",
    "CREATE INDEX ON users (id)",
    "CREATE INDEX ON stars (username)",
    "CREATE INDEX ON stars (repo_owner, repo_name)",
    "CREATE INDEX ON pull_requests (author)",
]

# The profiles (user emails) a row of each source belongs to.
AFFECTED = {
    "users": (None, ["email"]),
    "stars": ("SELECT email FROM users WHERE username = %s", ["username"]),
    "pull_requests": ("SELECT email FROM users WHERE username = %s", ["author"]),
    "repos": (
        "SELECT u.email FROM stars s JOIN users u ON u.username = s.username "
        "WHERE s.repo_owner = %s AND s.repo_name = %s",
        ["owner", "name"],
    ),
    "payment_info": ("SELECT email FROM users WHERE id = %s", ["id"]),
}


def quantile(sorted_values, q):
    """Nearest rank, as `denorm bench` computes it."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 1))))
    return sorted_values[rank - 1]


def ident(name):
    return '"' + name.replace('"', '""') + '"'


class Table:
    def __init__(self, spec):
        self.name = spec["name"]
        self.columns = [c["name"] for c in spec["columns"]]
        self.types = {c["name"]: TYPES[c["type"]] for c in spec["columns"]}
        self.key = spec["primary_key"]
        cols = ", ".join(ident(c) for c in self.columns)
        values = ", ".join(f"%s::{self.types[c]}" for c in self.columns)
        key_match = " AND ".join(f"{ident(k)} = %s::{self.types[k]}" for k in self.key)
        updates = ", ".join(
            f"{ident(c)} = EXCLUDED.{ident(c)}" for c in self.columns if c not in self.key
        )
        conflict = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
        self.create = (
            f"CREATE TABLE {ident(self.name)} ("
            + ", ".join(f"{ident(c)} {self.types[c]}" for c in self.columns)
            + f", PRIMARY KEY ({', '.join(ident(k) for k in self.key)}))"
        )
        self.select = f"SELECT {cols} FROM {ident(self.name)} WHERE {key_match}"
        self.upsert = (
            f"INSERT INTO {ident(self.name)} ({cols}) VALUES ({values}) "
            f"ON CONFLICT ({', '.join(ident(k) for k in self.key)}) {conflict}"
        )
        self.delete = f"DELETE FROM {ident(self.name)} WHERE {key_match}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", required=True, help="folder written by denorm bench export")
    parser.add_argument("--host", required=True, help="server host or socket folder")
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--user", default="postgres")
    parser.add_argument("--dbname", default="postgres")
    parser.add_argument("--changes", type=int, default=20000, help="changes to apply (at most)")
    parser.add_argument("--documents", help="write every profile of the snapshot here, as JSON lines {key, document}")
    args = parser.parse_args()
    folder = Path(args.dir)
    schema = json.loads((folder / "schema.json").read_text())
    tables = {s["name"]: Table(s) for s in schema["sources"]}
    missing = set(AFFECTED) - set(tables)
    if missing:
        sys.exit(f"bench_pg.py builds the github_user_profile documents; the export lacks {sorted(missing)}")

    result = {}
    with psycopg.connect(host=args.host, port=args.port, user=args.user, dbname=args.dbname) as conn:
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("SET TimeZone = 'UTC'")
        cur.execute(DENORM_TS)
        for t in tables.values():
            cur.execute(f"DROP TABLE IF EXISTS {ident(t.name)}")
            cur.execute(t.create)
        started = time.perf_counter()
        rows = 0
        for t in tables.values():
            path = folder / f"{t.name}.csv"
            with open(path, "rb") as f, cur.copy(
                f"COPY {ident(t.name)} FROM STDIN WITH (FORMAT csv, HEADER true)"
            ) as copy:
                while chunk := f.read(1 << 20):
                    copy.write(chunk)
            cur.execute(f"SELECT count(*) FROM {ident(t.name)}")
            rows += cur.fetchone()[0]
        result["rows"] = rows
        result["load_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        for statement in INDEXES:
            cur.execute(statement)
        cur.execute("ANALYZE")
        result["index_seconds"] = time.perf_counter() - started

        # Hydration: every profile, read through a server-side cursor.
        started = time.perf_counter()
        documents = 0
        doc_bytes = 0
        # The documents are written out as they are read (a buffered file: part of the timed
        # query, as reading them is).
        dump = open(args.documents, "w") if args.documents else None
        with conn.transaction():
            with conn.cursor(name="profiles") as named:
                named.itersize = 10000
                named.execute(PROFILE)
                for email, doc in named:
                    documents += 1
                    doc_bytes += len(doc)
                    if dump:
                        dump.write('{"key":' + json.dumps({"email": email}) + ',"document":' + doc + "}\n")
        if dump:
            dump.close()
        seconds = time.perf_counter() - started
        result.update(
            documents=documents,
            document_bytes=doc_bytes,
            query_seconds=seconds,
            query_rows_per_second=rows / seconds if seconds > 0 else None,
        )

        # Changes, one transaction each, flat out.
        latencies = []
        small, fan_out = [], []
        requeried = 0
        by_emails = PROFILE + " WHERE u.email = ANY(%s)"
        started = time.perf_counter()
        with open(folder / "changes.jsonl") as f:
            for line in f:
                if len(latencies) >= args.changes:
                    break
                change = json.loads(line)
                t = tables[change["source"]]
                key = [change["key"][k] for k in t.key]
                begin = time.perf_counter()
                with conn.transaction():
                    cur.execute(t.select, key)
                    old = cur.fetchone()
                    rows_touched = []
                    if old is not None:
                        rows_touched.append(dict(zip(t.columns, old)))
                    if change["op"] == "upsert":
                        row = change["row"]
                        cur.execute(t.upsert, [row[c] for c in t.columns])
                        rows_touched.append(row)
                    else:
                        cur.execute(t.delete, key)
                    emails = set()
                    query, columns = AFFECTED[t.name]
                    for r in rows_touched:
                        values = [r[c] for c in columns]
                        if any(v is None for v in values):
                            continue
                        if query is None:
                            emails.update(values)
                        else:
                            cur.execute(query, values)
                            emails.update(e for (e,) in cur.fetchall())
                    profiles = 0
                    if emails:
                        cur.execute(by_emails, [sorted(emails)])
                        profiles = len(cur.fetchall())
                        requeried += profiles
                latency = (time.perf_counter() - begin) * 1000.0
                latencies.append(latency)
                if profiles > SMALL_CHANGE_PROFILES:
                    fan_out.append(latency)
                elif profiles > 0:
                    small.append(latency)
        seconds = time.perf_counter() - started
        latencies.sort()
        for name, group in (("small", small), ("fan_out", fan_out)):
            group.sort()
            result[name] = dict(
                changes=len(group),
                p50_ms=quantile(group, 0.5),
                p90_ms=quantile(group, 0.9),
                p99_ms=quantile(group, 0.99),
                max_ms=group[-1] if group else None,
            )
        result.update(
            changes=len(latencies),
            changes_seconds=seconds,
            changes_per_second=len(latencies) / seconds if seconds > 0 else None,
            profiles_requeried=requeried,
            p50_ms=quantile(latencies, 0.5),
            p90_ms=quantile(latencies, 0.9),
            p99_ms=quantile(latencies, 0.99),
            max_ms=latencies[-1] if latencies else None,
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
