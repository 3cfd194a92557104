-- PostGraphile's copies of the read models, with the foreign keys it builds its relations
-- from. {src} is the schema of our read models, {dst} a fresh schema for the copies.
-- Run by bench/postgraphile.py; the copies hold what the statement page and the lists show.

CREATE TABLE {dst}.ministers (
    id text PRIMARY KEY,
    name text NOT NULL,
    title text NOT NULL
);
INSERT INTO {dst}.ministers SELECT id, name, title FROM {src}.ministers;

CREATE TABLE {dst}.topics (
    slug text PRIMARY KEY,
    name text NOT NULL
);
INSERT INTO {dst}.topics SELECT slug, name FROM {src}.topics;

CREATE TABLE {dst}.statements (
    id text PRIMARY KEY,
    slug text NOT NULL,
    title text NOT NULL,
    kind text NOT NULL,
    minister_id text NOT NULL REFERENCES {dst}.ministers (id),
    location text,
    occurred_on date NOT NULL,
    published_at timestamptz NOT NULL,
    paragraphs text[] NOT NULL,
    withdrawn boolean NOT NULL
);
INSERT INTO {dst}.statements
SELECT id, slug, title, kind, minister_id, location, occurred_on,
       to_timestamp(published_at_us / 1e6),
       ARRAY(SELECT json_array_elements_text(paragraphs::json)),
       withdrawn
FROM {src}.statements;
-- The indexes a list by publication (all, and per minister) needs, as ours has.
CREATE INDEX ON {dst}.statements (published_at DESC, id DESC);
CREATE INDEX ON {dst}.statements (minister_id, published_at DESC, id DESC);

CREATE TABLE {dst}.view_totals (
    statement_id text PRIMARY KEY REFERENCES {dst}.statements (id),
    view_count bigint NOT NULL
);
INSERT INTO {dst}.view_totals SELECT statement_id, view_count FROM {src}.view_totals;

CREATE TABLE {dst}.statement_topics (
    statement_id text NOT NULL REFERENCES {dst}.statements (id),
    topic_slug text NOT NULL REFERENCES {dst}.topics (slug),
    position bigint NOT NULL,
    PRIMARY KEY (statement_id, topic_slug)
);
INSERT INTO {dst}.statement_topics
SELECT statement_id, topic_slug, position FROM {src}.statement_topics
WHERE topic_slug IN (SELECT slug FROM {dst}.topics);
CREATE INDEX ON {dst}.statement_topics (topic_slug);

CREATE TABLE {dst}.statement_links (
    statement_id text NOT NULL REFERENCES {dst}.statements (id),
    related_id text NOT NULL REFERENCES {dst}.statements (id),
    position bigint NOT NULL,
    PRIMARY KEY (statement_id, related_id)
);
INSERT INTO {dst}.statement_links SELECT statement_id, related_id, position FROM {src}.statement_links;
CREATE INDEX ON {dst}.statement_links (related_id);

-- A statement's related statements, either direction, live ones, by first link: a computed
-- column (PostGraphile exposes it as `related` on Statement).
CREATE FUNCTION {dst}.statements_related(s {dst}.statements) RETURNS SETOF {dst}.statements
LANGUAGE sql STABLE AS $$
    SELECT r.* FROM (
        SELECT l.rid, min(l.pos) AS pos FROM (
            SELECT related_id AS rid, position AS pos FROM {dst}.statement_links
            WHERE statement_id = s.id
            UNION ALL
            SELECT statement_id, position FROM {dst}.statement_links WHERE related_id = s.id
        ) l GROUP BY l.rid
    ) f JOIN {dst}.statements r ON r.id = f.rid
    WHERE NOT r.withdrawn
    ORDER BY f.pos, r.id
$$;

ANALYZE {dst}.ministers, {dst}.topics, {dst}.statements, {dst}.view_totals,
    {dst}.statement_topics, {dst}.statement_links;
