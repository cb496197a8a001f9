"""The customer 360: everything about one person in one read, from any profile of the cluster.

Two implementations of one answer (docs/customer-360.md, "Performance"):

- ``customer_360`` — the portable read (SQLite, and the reference): a handful of indexed
  queries, each keyed by the cluster's profile ids and each returning only what is shown
  (current traits chosen in SQL, metrics summed in SQL, one page of the timeline).
- ``customer_360_json`` — PostgreSQL: the same answer as **one** statement that returns the
  response document as JSON text (``json_build_object``/``json_agg``), so a call is one round
  trip and needs no transaction of its own (a single statement reads one snapshot).

The statement applies the same rules as the portable read, module by module: trait strategies
(``profiles.current_traits``), consent (``consent.current_for_profiles``), purchases and
channels (``metrics.cluster_metrics``), preferences (``preferences.cluster_preferences``) and
the timeline's first page (``timeline.page``). Orders that Python decides (string comparisons
of ids) use ``COLLATE "C"``, which compares code points as Python does; orders that the
portable read leaves to the database use the database's collation in both.

No Python loop runs over a history. Module order: profiles (cluster lookup) ← consent,
metrics, preferences, timeline ← this module.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from seamline.db.lookup import not_found, usable_id
from seamline.identity import consent, metrics, preferences, profiles, timeline
from seamline.identity.customer_models import CONSENT_CHANNELS


def customer_360(session: Session, profile_id: str) -> dict[str, Any]:
    """The whole cluster of ``profile_id``: members, identifiers, current traits, consent,
    purchase metrics and channels, preferences and advisor, and the latest timeline items."""
    cluster_id, members = profiles.cluster_of(session, profile_id)
    latest, _ = timeline.page(session, members, limit=timeline.LATEST)
    chosen = preferences.cluster_preferences(session, members)
    return {
        "profile_id": profile_id,
        "cluster_id": cluster_id,
        "profile_ids": members,
        "identifiers": profiles.identifiers(session, members),
        "traits": profiles.current_traits(session, members),
        "consent": consent.current_for_profiles(session, members),
        "metrics": metrics.cluster_metrics(session, members),
        "preferences": chosen["preferences"],
        "advisor": chosen["advisor"],
        "events": latest,
    }


# -- PostgreSQL: the whole answer in one statement ------------------------------------------


def _at(column: str) -> str:
    """A timestamptz as ISO 8601 in UTC with microseconds (pydantic reads it back to the same
    aware datetime, whatever the session's time zone)."""
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


def _members_of(table: str) -> str:
    return f"{table}.profile_id IN (SELECT id FROM m)"  # noqa: S608 (constants only)


_CHANNEL_ARRAY = "ARRAY[" + ", ".join(f"'{c}'" for c in CONSENT_CHANNELS) + "]::text[]"
_EMPTY = ", ".join(f"'{v}'" for v in profiles._EMPTY_JSON)
_LIMIT = timeline.LATEST + 1  # as timeline.page: limit + 1 rows from each table


def _timeline_arm(table: str, at: str, columns: str) -> str:
    """The newest rows of one table: one ordered, limited index range per member (LATERAL),
    merged — the same rows as ``timeline._statement``'s UNION ALL arms, for any cluster size."""
    return f"""(
    SELECT x.* FROM m CROSS JOIN LATERAL (
      SELECT {columns} FROM {table} t WHERE t.profile_id = m.id
      ORDER BY t.{at} DESC, t.id DESC LIMIT {_LIMIT}
    ) x
    ORDER BY x.{at} DESC, x.id DESC LIMIT {_LIMIT}
  )"""  # noqa: S608 (constants only)


_TRACKED_COLUMNS = (
    "t.id, t.profile_id, t.message_id, t.type, t.name, t.category, t.channel, t.timestamp,"
    " t.received_at, t.properties, t.traits"
)
_DOMAIN_COLUMNS = (
    "t.id, t.profile_id, t.event_id, t.type, t.channel, t.occurred_at, t.aggregate_type,"
    " t.aggregate_id, t.summary, t.data"
)

# One row, one column: the response document, built once from constants. Parameters:
# ``profile_id``, and the trait names ranked as ``first`` and ``non_empty``
# (profiles.TRAIT_STRATEGIES at call time).
SQL_360 = f"""
WITH m AS MATERIALIZED (
  SELECT p.id, p.cluster_id FROM profiles p
  WHERE p.cluster_id = (SELECT q.cluster_id FROM profiles q WHERE q.id = %(profile_id)s)
),
tr AS (
  SELECT r.name, r.value, r.observed_at, r.source, r.profile_id FROM (
    SELECT t.name, t.value, t.observed_at, t.source, t.profile_id,
      row_number() OVER (PARTITION BY t.name ORDER BY
        CASE WHEN t.name = ANY(%(non_empty)s::text[])
          AND coalesce(CAST(t.value AS TEXT), 'null') IN ({_EMPTY}) THEN 1 ELSE 0 END,
        CASE WHEN t.name = ANY(%(first)s::text[]) THEN t.observed_at END,
        t.observed_at DESC, t.id DESC) AS rank
    FROM profile_traits t WHERE {_members_of("t")}
  ) r WHERE r.rank = 1
),
co AS (
  SELECT DISTINCT ON (c.channel, c.purpose)
    c.channel, c.purpose, c.state, c.level, c.source, c.effective_at, c.recorded_at,
    c.profile_id, c.change_id
  FROM consents c WHERE {_members_of("c")}
  ORDER BY c.channel, c.purpose, c.effective_at DESC, c.recorded_at DESC,
    c.change_id COLLATE "C" DESC
),
pu AS (
  SELECT pm.currency, sum(pm.orders_count) AS n, sum(pm.total_spent_minor) AS total,
    sum(pm.refunded_minor) AS refunded, min(pm.first_purchase_at) AS first,
    max(pm.last_purchase_at) AS last
  FROM profile_metrics pm WHERE {_members_of("pm")}
  GROUP BY pm.currency HAVING sum(pm.orders_count) > 0
),
ch AS (
  SELECT ca.channel, max(ca.last_seen) AS last
  FROM channel_activity ca WHERE {_members_of("ca")} GROUP BY ca.channel
),
pr AS (
  SELECT DISTINCT ON (pp.name) pp.name, pp.value, pp.set_at, pp.set_by
  FROM profile_preferences pp WHERE {_members_of("pp")}
  ORDER BY pp.name, pp.set_at DESC, pp.profile_id COLLATE "C" DESC
),
ev AS (
  SELECT 'tracked' AS kind, te.id, te.profile_id, te.type, te.name, te.category, te.channel,
    te.timestamp AS at,
    CASE te.type
      WHEN 'track' THEN coalesce(nullif(te.name, ''), 'Tracked event')
      WHEN 'page' THEN CASE WHEN coalesce(te.name, '') <> '' THEN 'Viewed page ' || te.name
        ELSE 'Viewed a page' END
      WHEN 'screen' THEN CASE WHEN coalesce(te.name, '') <> '' THEN 'Viewed screen ' || te.name
        ELSE 'Viewed a screen' END
      WHEN 'identify' THEN 'Identified'
      WHEN 'group' THEN 'Joined a group'
      WHEN 'alias' THEN 'Linked a previous id'
      ELSE te.type END AS summary,
    te.message_id, te.received_at, te.properties, te.traits,
    NULL AS event_id, NULL AS aggregate_type, NULL AS aggregate_id, NULL::jsonb AS data
  FROM {_timeline_arm("tracked_events", "timestamp", _TRACKED_COLUMNS)} te
  UNION ALL
  SELECT 'domain', de.id, de.profile_id, de.type, NULL, NULL, de.channel, de.occurred_at,
    de.summary, NULL, NULL, '{{}}'::jsonb, '{{}}'::jsonb, de.event_id, de.aggregate_type,
    de.aggregate_id, de.data
  FROM {_timeline_arm("timeline_entries", "occurred_at", _DOMAIN_COLUMNS)} de
),
latest AS (
  SELECT * FROM ev ORDER BY at DESC, id COLLATE "C" DESC LIMIT {timeline.LATEST}
)
SELECT CAST(json_build_object(
  'profile_id', CAST(%(profile_id)s AS text),
  'cluster_id', (SELECT min(m.cluster_id) FROM m),
  'profile_ids', (SELECT json_agg(m.id ORDER BY m.id) FROM m),
  'identifiers', coalesce((
    SELECT json_agg(json_build_object(
      'kind', i.kind, 'value', i.value, 'valid', i.valid, 'profile_id', i.profile_id,
      'source_channel', i.source_channel, 'first_seen', {_at("i.first_seen")},
      'last_seen', {_at("i.last_seen")}) ORDER BY i.kind, i.value)
    FROM identifiers i WHERE {_members_of("i")}), '[]'),
  'traits', coalesce((
    SELECT json_object_agg(tr.name, json_build_object(
      'value', tr.value, 'observed_at', {_at("tr.observed_at")}, 'source', tr.source,
      'profile_id', tr.profile_id,
      'strategy', CASE WHEN tr.name = ANY(%(first)s::text[]) THEN 'first'
        WHEN tr.name = ANY(%(non_empty)s::text[]) THEN 'non_empty' ELSE 'latest' END
      ) ORDER BY tr.name)
    FROM tr), '{{}}'),
  'consent', coalesce((
    SELECT json_agg(json_build_object(
      'channel', co.channel, 'purpose', co.purpose, 'state', co.state, 'level', co.level,
      'source', co.source, 'effective_at', {_at("co.effective_at")},
      'recorded_at', {_at("co.recorded_at")}, 'profile_id', co.profile_id,
      'change_id', co.change_id)
      ORDER BY coalesce(array_position({_CHANNEL_ARRAY}, CAST(co.channel AS text)), 99),
        co.purpose COLLATE "C")
    FROM co), '[]'),
  'metrics', json_build_object(
    'purchases', coalesce((
      SELECT json_agg(json_build_object(
        'currency', pu.currency, 'orders_count', pu.n, 'total_spent', pu.total,
        'refunded', pu.refunded, 'lifetime_value', pu.total - pu.refunded,
        'average_order_value', div(
          2 * pu.total + pu.n - mod(mod(2 * pu.total + pu.n, 2 * pu.n) + 2 * pu.n, 2 * pu.n),
          2 * pu.n),
        'first_purchase_at', {_at("pu.first")}, 'last_purchase_at', {_at("pu.last")})
        ORDER BY pu.currency)
      FROM pu), '[]'),
    'channels_used', coalesce((SELECT json_agg(ch.channel ORDER BY ch.channel) FROM ch), '[]'),
    'channels_count', (SELECT count(*) FROM ch),
    'last_seen', coalesce(
      (SELECT json_object_agg(ch.channel, {_at("ch.last")} ORDER BY ch.channel) FROM ch), '{{}}')
  ),
  'preferences', json_build_object(
    'size', (SELECT pr.value FROM pr WHERE pr.name = 'size'),
    'favourite_store', (SELECT pr.value FROM pr WHERE pr.name = 'favourite_store'),
    'preferred_channel', (SELECT pr.value FROM pr WHERE pr.name = 'preferred_channel'),
    'updated_at', (SELECT {_at("max(pr.set_at)")} FROM pr WHERE pr.name <> 'advisor')
  ),
  'advisor', (
    SELECT json_build_object(
      'staff_id', pr.value -> 'staff_id', 'name', pr.value -> 'name',
      'assigned_at', {_at("pr.set_at")}, 'assigned_by', pr.set_by)
    FROM pr WHERE pr.name = 'advisor' AND jsonb_typeof(pr.value) = 'object'
  ),
  'events', coalesce((
    SELECT json_agg(json_build_object(
      'kind', l.kind, 'id', l.id, 'profile_id', l.profile_id, 'type', l.type,
      'name', l.name, 'category', l.category, 'channel', l.channel,
      'timestamp', {_at("l.at")}, 'summary', l.summary, 'message_id', l.message_id,
      'received_at', {_at("l.received_at")}, 'properties', l.properties, 'traits', l.traits,
      'event_id', l.event_id, 'aggregate_type', l.aggregate_type,
      'aggregate_id', l.aggregate_id, 'data', l.data)
      ORDER BY l.at DESC, l.id COLLATE "C" DESC)
    FROM latest l), '[]')
) AS text)
WHERE EXISTS (SELECT FROM m)
"""  # noqa: S608 (built from constants; values are bound parameters)


def customer_360_json(connection: Connection, profile_id: str) -> str:
    """PostgreSQL: the 360 of ``profile_id`` as JSON text in the shape of ``ProfileOut`` (the
    caller validates and renders it), in one statement (404 ``profile_not_found`` if none).

    One statement reads one snapshot, so ``connection`` may be in autocommit mode."""
    if not usable_id(profile_id):
        raise not_found("profile", profile_id, "profile_not_found")
    strategies = profiles.TRAIT_STRATEGIES
    params = {
        "profile_id": profile_id,
        "first": sorted(n for n, s in strategies.items() if s == profiles.FIRST),
        "non_empty": sorted(n for n, s in strategies.items() if s == profiles.NON_EMPTY),
    }
    document: str | None = connection.exec_driver_sql(SQL_360, params).scalar()
    if document is None:
        raise not_found("profile", profile_id, "profile_not_found")
    return document
