//! Filter plans (`POST /v1/plan`, `cedargate plan --sql`).
