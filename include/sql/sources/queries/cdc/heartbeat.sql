-- Non-transactional: decoded on its own, so an idle slot has something to advance past.
SELECT pg_logical_emit_message(false, 'paydata.heartbeat', %(content)s)::text
