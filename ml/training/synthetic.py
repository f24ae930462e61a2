"""Generated history written straight into a warehouse staging layout (tests and benchmarks).

The workload generator's traffic (with its fraud process, unchanged) is generated in memory and
COPYed into the staging tables the CDC sink would fill (identifiers replaced by token-like
strings, personal data absent), one commit position per chunk; the sessions of its landing files
can be written to a Mongo database in the landing ingest's document shape. This skips OLTP and
change capture, so several seeds of a month or more of history fit in a test or a benchmark run;
the marts, features and labels are then built by the same code as in production.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from collections.abc import Iterator

from paydata.generator.config import TrafficConfig
from paydata.generator.landing import landing_records
from paydata.generator.reference import (
    MerchantProfile,
    chargeable_currencies,
    country_rows,
    currency_rows,
    fx_rate_rows,
    generate_merchants,
)
from paydata.generator.traffic import TrafficGenerator

STAGING_COLUMNS = {
    "oltp_customer": ("customer_id", "merchant_id", "country_code", "created_at", "updated_at"),
    "oltp_payment_method": ("payment_method_id", "customer_id", "type", "brand", "funding", "last4", "exp_month",
                            "exp_year", "bin_country_code", "fingerprint", "created_at"),
    "oltp_payment_intent": ("payment_intent_id", "merchant_id", "customer_id", "amount", "currency_code", "status",
                            "created_at", "updated_at"),
    "oltp_charge": ("charge_id", "payment_intent_id", "payment_method_id", "amount", "currency_code", "status",
                    "failure_code", "captured", "ip_address", "device_id", "session_id", "created_at",
                    "updated_at"),
    "oltp_refund": ("refund_id", "charge_id", "amount", "status", "reason", "created_at", "updated_at"),
    "oltp_dispute": ("dispute_id", "charge_id", "amount", "reason", "status", "opened_at", "closed_at",
                     "updated_at"),
    "oltp_balance_transaction": ("balance_transaction_id", "merchant_id", "type", "source_id", "amount", "fee",
                                 "net", "currency_code", "created_at", "available_on"),
}
BOOKKEEPING = ("_commit_lsn", "_index_in_txn", "_commit_time")


def token(domain: str, value) -> str:
    """A stable token-like stand-in for an identifier (never the value itself)."""
    return f"tok_{domain}_" + hashlib.blake2b(f"{domain}:{value}".encode(), digest_size=10).hexdigest()


class Commit:
    """One source transaction: its position and the next index in it (unique across tables)."""

    def __init__(self, lsn: int):
        self.lsn, self.index, self.time = lsn, 0, dt.datetime.now(dt.UTC)

    def stamp(self) -> tuple:
        self.index += 1
        return self.lsn, self.index - 1, self.time


def _copy(cursor, table: str, columns: tuple[str, ...], rows: Iterator[tuple], commit: Commit,
          extra: tuple = ()) -> int:
    """COPY rows into staging; each row gets the commit's bookkeeping columns (then ``extra``)."""
    buffer = io.StringIO()
    count = 0
    for row in rows:
        values = (*row, *commit.stamp(), *extra)
        buffer.write("\t".join("\\N" if v is None else str(v) for v in values) + "\n")
        count += 1
    buffer.seek(0)
    cursor.copy_expert(f"COPY staging.{table} ({', '.join(columns)}) FROM STDIN", buffer)
    return count


OFFSETS_UPSERT = ("INSERT INTO staging.cdc_offsets (source, commit_lsn, index_in_txn) VALUES (%s, %s, %s) "
                  "ON CONFLICT (source) DO UPDATE SET commit_lsn = EXCLUDED.commit_lsn, "
                  "index_in_txn = EXCLUDED.index_in_txn")


class SyntheticHistory:
    """Writes generated batches into ``staging`` of one warehouse connection."""

    def __init__(self, conn, *, merchants: int = 60, seed: int = 7):
        self.conn = conn
        self.lsn = 1000
        self.next_ids = {"customer": 1, "payment_method": 1, "payment_intent": 1, "charge": 1, "refund": 1,
                         "dispute": 1, "balance_transaction": 1}
        self.currencies = chargeable_currencies()
        self._seeds = generate_merchants(merchants, seed, self.currencies)
        self.merchants = [MerchantProfile(i + 1, s.mcc, s.country_code, s.default_currency_code, s.risk_tier_code,
                                          s.payout_schedule) for i, s in enumerate(self._seeds)]

    def _commit(self) -> Commit:
        self.lsn += 100
        return Commit(self.lsn)

    def _offsets(self, cursor, source: str, commit: Commit) -> None:
        cursor.execute(OFFSETS_UPSERT, (source, commit.lsn, max(0, commit.index - 1)))

    def reference(self, fx_start: dt.date, fx_days: int, seed: int = 7) -> None:
        """Currencies, countries, FX rates and merchants (one commit)."""
        commit = self._commit()
        with self.conn.cursor() as cursor:
            _copy(cursor, "reference_currency", ("currency_code", "numeric_code", "name", "minor_units") + BOOKKEEPING,
                  ((r["currency_code"], r["numeric_code"], r["name"], r["minor_units"]) for r in currency_rows()),
                  commit)
            _copy(cursor, "reference_country", ("country_code", "alpha3_code", "numeric_code", "name",
                                                "default_currency_code", "region") + BOOKKEEPING,
                  ((r["country_code"], r["alpha3_code"], r["numeric_code"], r["name"], r["default_currency_code"],
                    None) for r in country_rows()), commit)
            used = sorted({m.default_currency_code for m in self.merchants} | {"USD", "EUR", "GBP"})
            _copy(cursor, "reference_fx_rate", ("base_currency_code", "quote_currency_code", "effective_date", "rate",
                                                "source") + BOOKKEEPING,
                  ((r["base"], r["quote"], r["effective_date"], r["rate"], r["source"])
                   for r in fx_rate_rows(fx_start, fx_days, seed, used)), commit)
            columns = ("merchant_id", "legal_name", "mcc", "country_code", "default_currency_code", "payout_schedule",
                       "risk_tier_code", "status", "created_at", "updated_at")
            merchants = [(m.merchant_id, f"Merchant {m.merchant_id}", m.mcc, m.country_code, m.default_currency_code,
                          m.payout_schedule, m.risk_tier_code, "active", s.created_at, s.created_at)
                         for m, s in zip(self.merchants, self._seeds, strict=True)]
            first = commit.index
            _copy(cursor, "reference_merchant", columns + BOOKKEEPING, iter(merchants), commit)
            commit.index = first      # the mirror and its history row share the change's position
            _copy(cursor, "reference_merchant_history", columns + BOOKKEEPING + ("_op",), iter(merchants), commit,
                  extra=("S",))
            self._offsets(cursor, "reference", commit)
        self.conn.commit()

    def traffic(self, config: TrafficConfig, sessions_db=None) -> dict[str, int]:
        """One batch of traffic; each chunk is one commit. Returns rows per table."""
        generator = TrafficGenerator(config, self.merchants, self.currencies)
        counts = {"customer": 0, "charge": 0, "dispute": 0, "sessions": 0}
        for chunk in generator.chunks():
            commit = self._commit()
            rows = chunk.rows(dict(self.next_ids), encrypt=False)
            for table, count in chunk.counts().items():
                if table in self.next_ids:
                    self.next_ids[table] += count
            statuses = {charge_id: status for charge_id, _, status in sorted(rows["charge_status_step"])}
            with self.conn.cursor() as cursor:
                counts["customer"] += _copy(
                    cursor, "oltp_customer", STAGING_COLUMNS["oltp_customer"] + BOOKKEEPING,
                    ((token("customer", r[0]), r[1], r[6], r[7], r[8]) for r in rows["customer"]), commit)
                _copy(cursor, "oltp_payment_method", STAGING_COLUMNS["oltp_payment_method"] + BOOKKEEPING,
                      ((r[0], token("customer", r[1]), "card", r[3], r[4], r[5], r[6], r[7], r[8],
                        token("card", r[9]), r[10]) for r in rows["payment_method"]), commit)
                _copy(cursor, "oltp_payment_intent", STAGING_COLUMNS["oltp_payment_intent"] + BOOKKEEPING,
                      ((r[0], r[1], token("customer", r[2]), *r[3:]) for r in rows["payment_intent"]), commit)
                counts["charge"] += _copy(
                    cursor, "oltp_charge", STAGING_COLUMNS["oltp_charge"] + BOOKKEEPING,
                    ((r[0], r[1], r[2], r[3], r[4], statuses.get(r[0], r[5]), r[6], r[8], token("ip", r[9]),
                      token("device", r[10]), token("session", r[11]), r[12], r[13]) for r in rows["charge"]),
                    commit)
                _copy(cursor, "oltp_refund", STAGING_COLUMNS["oltp_refund"] + BOOKKEEPING, iter(rows["refund"]),
                      commit)
                counts["dispute"] += _copy(cursor, "oltp_dispute", STAGING_COLUMNS["oltp_dispute"] + BOOKKEEPING,
                                           iter(rows["dispute"]), commit)
                _copy(cursor, "oltp_balance_transaction",
                      STAGING_COLUMNS["oltp_balance_transaction"] + BOOKKEEPING, iter(rows["balance_transaction"]),
                      commit)
                self._offsets(cursor, "oltp", commit)
            self.conn.commit()
            if sessions_db is not None:
                counts["sessions"] += write_sessions(sessions_db, landing_records(generator, chunk))
        return counts


def session_documents(records: dict[str, list[dict]]) -> list[dict]:
    """Landing sessions and events in the ingest's shape (session document, events embedded, tokens)."""
    def moment(text: str) -> dt.datetime:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))

    documents = {}
    for session in records["sessions"]:
        key = token("session", session["session_id"])
        documents[key] = {
            "_id": key, "session_id": key, "bucket": 0, "merchant_id": session["merchant_id"],
            "started_at": moment(session["started_at"]), "ended_at": moment(session["ended_at"]),
            "device": {**session["device"], "device_id": token("device", session["device"]["device_id"])},
            "ip": token("ip", session["ip"]), "geo": session.get("geo") or {},
            "charge_count": session["charge_count"], "events": []}
    for event in records["events"]:
        document = documents.get(token("session", event["session_id"]))
        if document is not None and event["seq"] < 100:
            document["events"].append({"event": event["event"], "seq": event["seq"], "ts": moment(event["ts"]),
                                       "properties": event.get("properties") or {}})
    return list(documents.values())


def write_sessions(database, records: dict[str, list[dict]]) -> int:
    documents = session_documents(records)
    if documents:
        database["sessions"].insert_many(documents, ordered=False)
    return len(documents)


class InMemorySessions:
    """The ``sessions`` collection of a database, in memory (benchmarks of model quality: the
    session documents of a long history would take the local wire server minutes to insert).
    Supports exactly the query :func:`ml.features.sessions.fetch_sessions` issues."""

    def __init__(self):
        self.by_session: dict[str, list[dict]] = {}

    def __getitem__(self, name: str):
        if name != "sessions":
            raise KeyError(name)
        return self

    def insert_many(self, documents, ordered: bool = False) -> None:
        for document in documents:
            self.by_session.setdefault(document["session_id"], []).append(document)

    def find(self, query: dict, projection=None):
        for key in query["session_id"]["$in"]:
            yield from self.by_session.get(key, [])
