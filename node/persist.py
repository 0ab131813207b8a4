"""The durable half of persistence: SQLite (WAL) in the node's data dir, driven from asyncio.

Theory of operation:
- ``SqliteStore`` is plain blocking code: ``load(now_ms)`` reads what a previous run committed
  (deleting expired rows first), ``commit(batch)`` applies one ``node.durability.Batch`` in one
  transaction. WAL mode; ``synchronous`` NORMAL by default: a committed transaction is in the
  WAL file (the OS has it) when ``commit`` returns, so it survives the node process dying at
  any point (SIGKILL, OOM kill, crash) — what a DHT replica needs, since other replicas cover a
  host failure. FULL (env ``DHT_PERSIST_SYNC=full``) also fsyncs every commit, surviving power
  loss, at ~8 ms per commit on this machine's disk. One file, ``dht.sqlite3``; no server.
- ``Persister`` runs FULL commits on one worker thread (an fsync never stalls the event loop)
  and NORMAL commits on the loop itself (a WAL append costs less than the thread hop); either
  way it does group commit: ``kick()`` starts a commit of everything marked when none
  is running; changes made during a commit wait for the next one. When a commit ends it tells
  the core (``DhtProtocol.persisted``), which releases the acknowledgements it held, and the
  runtime pumps them out. Under load one fsync therefore covers many STOREs.
- A failed commit is logged and retried on the next kick; the acknowledgements it would have
  released stay held (an ack is only ever sent for data on disk).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from node.durability import AuthoredRow, Batch, JoinedRow, ProviderRow, RecordRow, Snapshot
from node.ids import ID_BYTES, NodeId

if TYPE_CHECKING:
    from node.protocol import DhtProtocol

log = logging.getLogger("node.persist")

DB_FILE_NAME = "dht.sqlite3"
SYNC_MODES = ("NORMAL", "FULL")
SYNC_ENV = "DHT_PERSIST_SYNC"
CONTACTS_INTERVAL_S = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    key BLOB PRIMARY KEY, blob BLOB NOT NULL, expires_ms INTEGER NOT NULL, cached INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS providers (
    topic BLOB NOT NULL, node BLOB NOT NULL, blob BLOB NOT NULL, expires_ms INTEGER NOT NULL,
    PRIMARY KEY (topic, node)
);
CREATE TABLE IF NOT EXISTS authored (key BLOB PRIMARY KEY, blob BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS contacts (id BLOB PRIMARY KEY);
CREATE TABLE IF NOT EXISTS joined (topic BLOB PRIMARY KEY, port INTEGER, meta BLOB NOT NULL);
"""


class SqliteStore:
    """Blocking; call from one thread at a time."""

    def __init__(self, path: str | Path, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in SYNC_MODES:
            raise ValueError(f"synchronous must be one of {SYNC_MODES}, got {synchronous!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.executescript(_SCHEMA)
        self.commits = 0

    def load(self, now_ms: int) -> Snapshot:
        db = self._db
        with db:
            db.execute("BEGIN")
            db.execute("DELETE FROM records WHERE expires_ms <= ?", (now_ms,))
            db.execute("DELETE FROM providers WHERE expires_ms <= ?", (now_ms,))
        records = [
            RecordRow(k, b, e, bool(c))
            for k, b, e, c in db.execute("SELECT key, blob, expires_ms, cached FROM records")
        ]
        providers = [
            ProviderRow(t, n, b, e)
            for t, n, b, e in db.execute("SELECT topic, node, blob, expires_ms FROM providers")
        ]
        authored = [AuthoredRow(k, b) for k, b in db.execute("SELECT key, blob FROM authored")]
        contacts = [row[0] for row in db.execute("SELECT id FROM contacts")]
        joined = [
            JoinedRow(t, p, m) for t, p, m in db.execute("SELECT topic, port, meta FROM joined")
        ]
        return Snapshot(records, providers, authored, contacts, joined)

    def commit(self, batch: Batch) -> None:
        db = self._db
        with db:
            db.execute("BEGIN")
            db.executemany(
                "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)",
                [(r.key, r.blob, r.expires_ms, int(r.cached)) for r in batch.records],
            )
            db.executemany(
                "DELETE FROM records WHERE key = ?", [(k,) for k in batch.record_deletes]
            )
            db.executemany(
                "INSERT OR REPLACE INTO providers VALUES (?, ?, ?, ?)",
                [(p.topic, p.node, p.blob, p.expires_ms) for p in batch.providers],
            )
            db.executemany(
                "DELETE FROM providers WHERE topic = ? AND node = ?", batch.provider_deletes
            )
            db.executemany(
                "INSERT OR REPLACE INTO authored VALUES (?, ?)",
                [(a.key, a.blob) for a in batch.authored],
            )
            db.executemany(
                "DELETE FROM authored WHERE key = ?", [(k,) for k in batch.authored_deletes]
            )
            db.executemany(
                "INSERT OR REPLACE INTO joined VALUES (?, ?, ?)",
                [(j.topic, j.port, j.meta) for j in batch.joined],
            )
            db.executemany(
                "DELETE FROM joined WHERE topic = ?", [(t,) for t in batch.joined_deletes]
            )
            if batch.contacts is not None:
                db.execute("DELETE FROM contacts")
                db.executemany("INSERT INTO contacts VALUES (?)", [(c,) for c in batch.contacts])
        self.commits += 1

    def close(self) -> None:
        self._db.close()


class Persister:
    """Group commit of the core's changes on a worker thread (see the module docstring).

    ``take`` builds the next batch from the core (``with_contacts``: include the routing table if
    it changed); ``done(gen)`` is called on the loop after generation ``gen`` is committed."""

    def __init__(self, data_dir: str | Path, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in SYNC_MODES:
            raise ValueError(f"{SYNC_ENV} must be one of {SYNC_MODES}, got {synchronous!r}")
        self.path = Path(data_dir) / DB_FILE_NAME
        self._synchronous = synchronous
        # NORMAL commits do not fsync: run them on the loop (a thread hop would cost more,
        # badly so on a loaded machine); FULL commits fsync, on the worker thread.
        self._inline = synchronous.upper() == "NORMAL"
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="persist")
        self._store: SqliteStore | None = None
        self._take: Callable[[bool], Batch] | None = None
        self._dirty: Callable[[], bool] = lambda: False
        self._done: Callable[[int], None] = lambda gen: None
        self._running: asyncio.Task[None] | None = None
        self._committed = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._contacts_due = False
        self._contacts_task: asyncio.Task[None] | None = None
        self.commits = 0
        self.rows = 0

    async def open(self, now_ms: int) -> Snapshot:
        loop = asyncio.get_running_loop()

        def _open() -> Snapshot:
            self._store = SqliteStore(self.path, self._synchronous)
            return self._store.load(now_ms)

        return await loop.run_in_executor(self._pool, _open)

    def attach(
        self, take: Callable[[bool], Batch], dirty: Callable[[], bool], done: Callable[[int], None]
    ) -> None:
        self._take, self._dirty, self._done = take, dirty, done
        self._contacts_task = asyncio.get_running_loop().create_task(self._contacts_loop())

    async def _contacts_loop(self) -> None:
        while True:
            await asyncio.sleep(CONTACTS_INTERVAL_S)
            self._contacts_due = True
            self.kick()

    def kick(self) -> None:
        """Start a commit when something is marked and none is running."""
        if self._running is not None or self._take is None or self._store is None:
            return
        if not self._dirty() and not self._contacts_due:
            return
        self._running = asyncio.get_running_loop().create_task(self._commit())

    async def _commit(self) -> None:
        # The batch is taken when the task runs: everything changed in this loop turn is in it.
        store, take = self._store, self._take
        assert store is not None
        assert take is not None
        batch = take(self._contacts_due)
        self._contacts_due = False
        try:
            if len(batch) and self._inline:
                store.commit(batch)  # no fsync: a WAL append, tens of microseconds
            elif len(batch):
                await asyncio.get_running_loop().run_in_executor(self._pool, store.commit, batch)
            if len(batch):
                self.commits += 1
                self.rows += len(batch)
        except (sqlite3.Error, OSError) as exc:
            log.error("commit of %d rows failed: %s", len(batch), exc)
            self._running = None
            return
        self._running = None
        self._committed = batch.gen
        for gen, fut in list(self._waiters):
            if gen <= batch.gen and not fut.done():
                fut.set_result(None)
        self._waiters = [(g, f) for g, f in self._waiters if not f.done()]
        self._done(batch.gen)
        self.kick()

    async def flushed(self, gen: int) -> None:
        """Return once generation ``gen`` is committed."""
        if self._committed >= gen or self._store is None:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((gen, fut))
        self.kick()
        await fut

    async def close(self) -> None:
        """Commit what is left, then close the database."""
        if self._contacts_task is not None:
            self._contacts_task.cancel()
        if self._running is not None:
            await asyncio.shield(self._running)
        self._contacts_due = True
        self.kick()
        if self._running is not None:
            await asyncio.shield(self._running)
        store, self._store = self._store, None
        if store is not None:
            await asyncio.get_running_loop().run_in_executor(self._pool, store.close)
        self._pool.shutdown(wait=False)


async def start_persistence(
    persister: Persister, core: DhtProtocol, now: Callable[[], float], pump: Callable[[], None]
) -> list[NodeId]:
    """Load the previous run's state into ``core``, turn on durable acks; the saved contacts."""
    snapshot = await persister.open(core.wall_ms(now()))
    durability = core.persistent(snapshot, now())

    def done(gen: int) -> None:
        core.persisted(gen)
        pump()

    persister.attach(
        lambda contacts: core.take_batch(now(), contacts), lambda: durability.dirty, done
    )
    log.info(
        "restored %d records, %d providers, %d authored, %d joined topics, %d contacts from %s",
        len(snapshot.records), len(snapshot.providers), len(snapshot.authored),
        len(snapshot.joined), len(snapshot.contacts), persister.path,
    )  # fmt: skip
    return [NodeId(c) for c in snapshot.contacts if len(c) == ID_BYTES]


async def synced(persister: Persister, core: DhtProtocol) -> None:
    """Return once everything ``core`` changed so far is committed."""
    d = core.durability
    if d is not None:
        await persister.flushed(d.gen if d.dirty else d.gen - 1)
