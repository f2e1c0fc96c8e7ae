-- The schema the landed 0.1.0 code made with SQLModel create_all (before migrations), dumped from
-- sqlite_master: tests/test_migrations.py builds a database from it and upgrades it in place.
CREATE TABLE papers (
	"key" VARCHAR(512) NOT NULL, 
	arxiv_id VARCHAR(64), 
	version INTEGER, 
	title TEXT NOT NULL, 
	abstract TEXT DEFAULT '' NOT NULL, 
	authors_json TEXT DEFAULT '[]' NOT NULL, 
	categories_json TEXT DEFAULT '[]' NOT NULL, 
	url TEXT, 
	pdf_url TEXT, 
	published_at DATETIME, 
	upvotes INTEGER, 
	extra_json TEXT DEFAULT '{}' NOT NULL, 
	first_seen_at DATETIME, 
	updated_at DATETIME, 
	PRIMARY KEY ("key")
);
CREATE INDEX ix_papers_first_seen_at ON papers (first_seen_at);
CREATE INDEX ix_papers_arxiv_id ON papers (arxiv_id);
CREATE TABLE users (
	id VARCHAR(128) NOT NULL, 
	email VARCHAR(320) NOT NULL, 
	timezone VARCHAR(64) NOT NULL, 
	active BOOLEAN NOT NULL, 
	subscribed BOOLEAN NOT NULL, 
	unsubscribed_via_link BOOLEAN NOT NULL, 
	settings_json TEXT DEFAULT '{}' NOT NULL, 
	feed_nonce VARCHAR(128), 
	feed_token_hash VARCHAR(128), 
	created_at DATETIME, 
	updated_at DATETIME, 
	unsubscribed_at DATETIME, 
	PRIMARY KEY (id)
);
CREATE INDEX ix_users_feed_token_hash ON users (feed_token_hash);
CREATE TABLE feedback_events (
	id INTEGER NOT NULL, 
	user_id VARCHAR(128) NOT NULL, 
	paper_key VARCHAR(512) NOT NULL, 
	vote VARCHAR(8) NOT NULL, 
	via VARCHAR(16) NOT NULL, 
	at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
CREATE INDEX ix_feedback_events_user_id ON feedback_events (user_id);
CREATE TABLE source_state (
	name VARCHAR(128) NOT NULL, 
	etag VARCHAR(512), 
	last_modified VARCHAR(128), 
	last_attempt_at DATETIME, 
	last_success_at DATETIME, 
	last_count INTEGER, 
	last_error TEXT, 
	last_error_at DATETIME, 
	error_count INTEGER NOT NULL, 
	next_retry_at DATETIME, 
	PRIMARY KEY (name)
);
CREATE TABLE paper_embeddings (
	paper_key VARCHAR(512) NOT NULL, 
	model VARCHAR(128) NOT NULL, 
	text_hash VARCHAR(64) NOT NULL, 
	dim INTEGER NOT NULL, 
	vector BLOB NOT NULL, 
	PRIMARY KEY (paper_key, model)
);
CREATE TABLE feature_spaces (
	backend VARCHAR(32) NOT NULL, 
	fitted_at DATETIME, 
	identity VARCHAR(128) NOT NULL, 
	keys_json TEXT NOT NULL, 
	space BLOB NOT NULL, 
	PRIMARY KEY (backend)
);
CREATE TABLE listings (
	id INTEGER NOT NULL, 
	paper_key VARCHAR(512) NOT NULL, 
	source VARCHAR(128) NOT NULL, 
	day DATE NOT NULL, 
	announce_type VARCHAR(32), 
	seen_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_listing UNIQUE (paper_key, source, day), 
	FOREIGN KEY(paper_key) REFERENCES papers ("key")
);
CREATE INDEX ix_listings_seen_at ON listings (seen_at);
CREATE INDEX ix_listings_day ON listings (day);
CREATE INDEX ix_listings_paper_key ON listings (paper_key);
CREATE INDEX ix_listings_source ON listings (source);
CREATE TABLE feedback (
	user_id VARCHAR(128) NOT NULL, 
	paper_key VARCHAR(512) NOT NULL, 
	vote INTEGER NOT NULL, 
	via VARCHAR(16) NOT NULL, 
	at DATETIME NOT NULL, 
	PRIMARY KEY (user_id, paper_key), 
	FOREIGN KEY(user_id) REFERENCES users (id), 
	FOREIGN KEY(paper_key) REFERENCES papers ("key")
);
CREATE TABLE digests (
	id INTEGER NOT NULL, 
	user_id VARCHAR(128) NOT NULL, 
	day DATE NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	claimed_at DATETIME, 
	claimed_by VARCHAR(128), 
	lease_until DATETIME, 
	covers_from DATETIME, 
	covers_until DATETIME, 
	sent_at DATETIME, 
	message_id VARCHAR(255), 
	attempts INTEGER NOT NULL, 
	next_attempt_at DATETIME, 
	error TEXT, 
	note TEXT, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_digest_user_day UNIQUE (user_id, day), 
	FOREIGN KEY(user_id) REFERENCES users (id)
);
CREATE INDEX ix_digests_user_id ON digests (user_id);
CREATE TABLE profiles (
	user_id VARCHAR(128) NOT NULL, 
	fingerprint VARCHAR(128) NOT NULL, 
	trained_at DATETIME, 
	model BLOB NOT NULL, 
	PRIMARY KEY (user_id), 
	FOREIGN KEY(user_id) REFERENCES users (id)
);
CREATE TABLE digest_items (
	id INTEGER NOT NULL, 
	digest_id INTEGER NOT NULL, 
	user_id VARCHAR(128) NOT NULL, 
	paper_key VARCHAR(512) NOT NULL, 
	position INTEGER NOT NULL, 
	score FLOAT NOT NULL, 
	reason TEXT DEFAULT '' NOT NULL, 
	highlight TEXT, 
	explore BOOLEAN NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_digest_item UNIQUE (digest_id, paper_key), 
	FOREIGN KEY(digest_id) REFERENCES digests (id), 
	FOREIGN KEY(paper_key) REFERENCES papers ("key")
);
CREATE INDEX ix_digest_items_digest_id ON digest_items (digest_id);
CREATE INDEX ix_digest_items_user_id ON digest_items (user_id);
