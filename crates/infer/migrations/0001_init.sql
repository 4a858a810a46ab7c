-- stockcast schema: securities and their adjusted daily prices, published model versions, recommendation runs
-- with their predictions and recommendations (a run's rows are replaced as a whole, in one transaction).

CREATE TABLE securities (
    symbol TEXT PRIMARY KEY CHECK (symbol ~ '^[A-Za-z0-9._^-]{1,32}$'),
    name   TEXT,
    sector TEXT
);

-- Split/dividend-adjusted OHLCV as stockcast uses it (raw_close: the unadjusted close, when known).
CREATE TABLE prices (
    symbol    TEXT             NOT NULL REFERENCES securities (symbol),
    date      DATE             NOT NULL,
    open      DOUBLE PRECISION CHECK (open > 0),
    high      DOUBLE PRECISION CHECK (high > 0),
    low       DOUBLE PRECISION CHECK (low > 0),
    close     DOUBLE PRECISION NOT NULL CHECK (close > 0),
    volume    DOUBLE PRECISION CHECK (volume >= 0),
    raw_close DOUBLE PRECISION CHECK (raw_close > 0),
    PRIMARY KEY (symbol, date)
);
CREATE INDEX prices_date_idx ON prices (date);

CREATE TABLE model_versions (
    id                BIGSERIAL PRIMARY KEY,
    name              TEXT        NOT NULL,
    version           BIGINT      NOT NULL CHECK (version >= 1),
    kind              TEXT        NOT NULL,
    feature_spec_hash TEXT        NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    manifest          JSONB       NOT NULL,
    UNIQUE (name, version)
);

CREATE TABLE recommendation_runs (
    id               BIGSERIAL PRIMARY KEY,
    as_of            DATE        NOT NULL,
    model_version_id BIGINT      NOT NULL REFERENCES model_versions (id),
    created_at       TIMESTAMPTZ NOT NULL,
    symbols          INTEGER     NOT NULL CHECK (symbols >= 0),
    params           JSONB       NOT NULL DEFAULT '{}',
    UNIQUE (as_of, model_version_id)
);
CREATE INDEX recommendation_runs_as_of_idx ON recommendation_runs (as_of DESC);

CREATE TABLE predictions (
    run_id BIGINT           NOT NULL REFERENCES recommendation_runs (id) ON DELETE CASCADE,
    symbol TEXT             NOT NULL REFERENCES securities (symbol),
    score  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, symbol)
);

CREATE TABLE recommendations (
    run_id          BIGINT           NOT NULL REFERENCES recommendation_runs (id) ON DELETE CASCADE,
    symbol          TEXT             NOT NULL REFERENCES securities (symbol),
    rank            INTEGER          NOT NULL CHECK (rank >= 1),
    expected_return DOUBLE PRECISION NOT NULL,
    action          TEXT             NOT NULL CHECK (action IN ('buy', 'hold', 'sell')),
    sector          TEXT,
    PRIMARY KEY (run_id, symbol),
    UNIQUE (run_id, rank)
);
CREATE INDEX recommendations_sector_idx ON recommendations (run_id, sector, rank);
CREATE INDEX recommendations_action_idx ON recommendations (run_id, action, rank);
