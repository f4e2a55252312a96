-- RiskDesk on PostgreSQL: four-eyes and the audit trail enforced by the database itself.
-- Run by the store owner (the login that runs `init`); it needs CREATEROLE to create riskdesk_app.
-- Application logins are members of riskdesk_app: they read everything, write operational data,
-- INSERT change requests, and change risk parameters ONLY through rd_decide (SECURITY DEFINER),
-- which refuses the maker as checker (session_user is the real login inside the function).

DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'riskdesk_app') THEN
    CREATE ROLE riskdesk_app NOLOGIN;
  END IF;
END $$;

GRANT USAGE ON SCHEMA public TO riskdesk_app;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO riskdesk_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO riskdesk_app;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public FROM riskdesk_app;
-- operational data the workstations write themselves
GRANT INSERT, UPDATE, DELETE ON positions, cash_balances, prices, margin_calls, margin_call_events,
  margin_call_snapshots, store_meta TO riskdesk_app;
GRANT INSERT ON change_requests TO riskdesk_app;

-- the audit chain: one writer at a time (advisory lock), hash over a length-prefixed canonical form
CREATE OR REPLACE FUNCTION rd_audit_write(p_actor text, p_action text, p_entity text, p_key text,
    p_before text, p_after text, p_request integer, p_ws text) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
  prev text; new_id integer; t timestamptz := clock_timestamp(); ts_text text; h text;
  k text := coalesce(p_key, ''); b text := coalesce(p_before, ''); a text := coalesce(p_after, '');
  r text := coalesce(p_request::text, ''); w text := coalesce(p_ws, ''); i text;
BEGIN
  PERFORM pg_advisory_xact_lock(7243001);
  SELECT hash INTO prev FROM audit_log ORDER BY id DESC LIMIT 1;
  prev := coalesce(prev, repeat('0', 64));
  new_id := nextval('audit_log_id_seq');
  i := new_id::text;
  ts_text := to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || 'Z';
  -- the canonical form of services/audit.py: each field as "<length>:<text>", joined by '|'
  h := encode(sha256(convert_to(
        length(i) || ':' || i || '|' || length(ts_text) || ':' || ts_text || '|' ||
        length(p_actor) || ':' || p_actor || '|' || length(p_action) || ':' || p_action || '|' ||
        length(p_entity) || ':' || p_entity || '|' || length(k) || ':' || k || '|' ||
        length(b) || ':' || b || '|' || length(a) || ':' || a || '|' || length(r) || ':' || r || '|' ||
        length(w) || ':' || w || '|' || length(prev) || ':' || prev, 'UTF8')), 'hex');
  INSERT INTO audit_log (id, ts, actor, action, entity, entity_key, before, after, request_id, workstation,
                         prev_hash, hash)
  VALUES (new_id, t, p_actor, p_action, p_entity, k, b, a, p_request, w, prev, h);
  RETURN new_id;
END $$;
REVOKE ALL ON FUNCTION rd_audit_write(text, text, text, text, text, text, integer, text) FROM PUBLIC;

-- what an application login may audit (logins, exports, requests): the actor is always session_user
CREATE OR REPLACE FUNCTION rd_audit(p_action text, p_entity text, p_key text, p_before text, p_after text,
    p_request integer, p_ws text) RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
  SELECT rd_audit_write(session_user::text, p_action, p_entity, p_key, p_before, p_after, p_request, p_ws)
$$;
GRANT EXECUTE ON FUNCTION rd_audit(text, text, text, text, text, integer, text) TO riskdesk_app;

CREATE OR REPLACE FUNCTION rd_audit_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the audit log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
DROP TRIGGER IF EXISTS audit_log_immutable ON audit_log;
CREATE TRIGGER audit_log_immutable BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION rd_audit_immutable();
DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log;
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION rd_audit_immutable();

-- a new request: the maker is whoever is logged in, whatever the INSERT says
CREATE OR REPLACE FUNCTION rd_request_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF pg_has_role(session_user, 'riskdesk_app', 'MEMBER') AND NOT pg_has_role(session_user, 'pg_database_owner', 'MEMBER')
     AND session_user::text <> (SELECT tableowner FROM pg_tables WHERE tablename = 'change_requests') THEN
    NEW.maker := session_user::text;
  END IF;
  NEW.status := 'pending'; NEW.checker := NULL; NEW.decided_at := NULL; NEW.step := 0;
  NEW.created_at := coalesce(NEW.created_at, now());
  RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS change_requests_insert ON change_requests;
CREATE TRIGGER change_requests_insert BEFORE INSERT ON change_requests
  FOR EACH ROW EXECUTE FUNCTION rd_request_insert();

CREATE OR REPLACE FUNCTION rd_notify_request() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('riskdesk_changes', json_build_object('id', NEW.id, 'status', NEW.status,
                                                          'kind', NEW.kind)::text);
  RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS change_requests_notify ON change_requests;
CREATE TRIGGER change_requests_notify AFTER INSERT OR UPDATE ON change_requests
  FOR EACH ROW EXECUTE FUNCTION rd_notify_request();

-- apply an approved request to its target, re-checking the target's version
CREATE OR REPLACE FUNCTION rd_apply(r change_requests) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
  key_cond text; cols text; cur_version integer; who text; at timestamptz; payload jsonb;
BEGIN
  SELECT string_agg(format('%I = %L', k, v), ' AND ') INTO key_cond
    FROM jsonb_each_text(r.target_key::jsonb) AS t(k, v);
  IF r.op IN ('update', 'delete') AND r.target_version IS NOT NULL THEN
    EXECUTE format('SELECT version FROM %I WHERE %s FOR UPDATE', r.target_table, key_cond) INTO cur_version;
    IF cur_version IS NULL THEN
      RAISE EXCEPTION 'the target % % no longer exists', r.target_table, r.target_key USING ERRCODE = 'P0002';
    END IF;
    IF cur_version <> r.target_version THEN
      SELECT actor, ts INTO who, at FROM audit_log
        WHERE entity = r.target_table AND entity_key = r.target_key AND action = 'apply'
        ORDER BY id DESC LIMIT 1;
      RAISE EXCEPTION 'stale: % % was changed by % at % since this request was made — reload',
        r.target_table, r.target_key, coalesce(who, 'someone'),
        coalesce(to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC', 'an unknown time')
        USING ERRCODE = 'P0001', HINT = 'RD_STALE';
    END IF;
  END IF;
  IF r.op = 'update' THEN
    SELECT string_agg(format('%I', k), ', ') INTO cols FROM jsonb_object_keys(r.after::jsonb) AS k;
    EXECUTE format('UPDATE %I SET (%s) = (SELECT %s FROM jsonb_populate_record(NULL::%I, $1))%s WHERE %s',
                   r.target_table, cols, cols, r.target_table,
                   CASE WHEN r.target_version IS NULL THEN '' ELSE ', version = version + 1' END, key_cond)
      USING r.after::jsonb;
  ELSIF r.op = 'insert' THEN
    payload := r.after::jsonb || r.target_key::jsonb;
    SELECT string_agg(format('%I', k), ', ') INTO cols FROM jsonb_object_keys(payload) AS k;
    EXECUTE format('INSERT INTO %I (%s) SELECT %s FROM jsonb_populate_record(NULL::%I, $1)',
                   r.target_table, cols, cols, r.target_table) USING payload;
  ELSE
    EXECUTE format('DELETE FROM %I WHERE %s', r.target_table, key_cond);
  END IF;
END $$;
REVOKE ALL ON FUNCTION rd_apply(change_requests) FROM PUBLIC;

-- approve (one step of the flow; the last step applies) or reject, as the logged-in checker
CREATE OR REPLACE FUNCTION rd_decide(p_id integer, p_decision text, p_comment text, p_ws text DEFAULT '')
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
  r change_requests; me text := session_user::text; my_role text; steps jsonb; need text; n integer;
BEGIN
  SELECT * INTO r FROM change_requests WHERE id = p_id FOR UPDATE;
  IF NOT FOUND THEN RAISE EXCEPTION 'change request % does not exist', p_id; END IF;
  IF r.status <> 'pending' THEN RAISE EXCEPTION 'change request % is %, not pending', p_id, r.status; END IF;
  IF r.expires_at IS NOT NULL AND r.expires_at < now() THEN
    UPDATE change_requests SET status = 'expired', decided_at = now() WHERE id = p_id;
    PERFORM rd_audit_write(me, 'expire', 'change_requests', p_id::text, '', '', p_id, p_ws);
    RETURN 'expired';
  END IF;
  IF me = r.maker THEN
    RAISE EXCEPTION 'four-eyes: % made change request % and cannot decide it', me, p_id
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  SELECT role INTO my_role FROM users WHERE login = me AND active;
  steps := r.flow_steps::jsonb;
  need := steps ->> r.step;
  IF my_role IS NULL OR NOT EXISTS (
       SELECT 1 FROM role_permissions WHERE role = my_role AND action = 'approve' AND kind IN (r.kind, '*'))
     OR NOT (my_role = need OR (my_role = 'cro' AND need = 'supervisor')) THEN
    RAISE EXCEPTION '% (%) may not decide step % (%) of change request %', me, coalesce(my_role, 'no role'),
      r.step + 1, need, p_id USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF EXISTS (SELECT 1 FROM change_request_approvals WHERE request_id = p_id AND checker = me) THEN
    RAISE EXCEPTION '% already approved an earlier step of change request %', me, p_id
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF p_decision = 'reject' THEN
    IF coalesce(btrim(p_comment), '') = '' THEN RAISE EXCEPTION 'a rejection needs a comment'; END IF;
    UPDATE change_requests SET status = 'rejected', checker = me, decided_at = now(), comment = p_comment,
      version = version + 1 WHERE id = p_id;
    PERFORM rd_audit_write(me, 'reject', 'change_requests', p_id::text, '', p_comment, p_id, p_ws);
    RETURN 'rejected';
  ELSIF p_decision <> 'approve' THEN
    RAISE EXCEPTION 'unknown decision %', p_decision;
  END IF;
  INSERT INTO change_request_approvals (request_id, step, role, checker, decided_at, comment)
    VALUES (p_id, r.step, my_role, me, now(), p_comment);
  n := jsonb_array_length(steps);
  IF r.step + 1 < n THEN
    UPDATE change_requests SET step = step + 1, version = version + 1 WHERE id = p_id;
    PERFORM rd_audit_write(me, 'approve_step', 'change_requests', p_id::text, '', coalesce(p_comment, ''),
                           p_id, p_ws);
    RETURN 'pending';
  END IF;
  PERFORM rd_apply(r);
  UPDATE change_requests SET status = 'approved', checker = me, decided_at = now(), comment = p_comment,
    version = version + 1 WHERE id = p_id;
  PERFORM rd_audit_write(me, 'approve', 'change_requests', p_id::text, '', coalesce(p_comment, ''), p_id, p_ws);
  PERFORM rd_audit_write(r.maker, 'apply', r.target_table, r.target_key, r.before, r.after, p_id, p_ws);
  RETURN 'approved';
END $$;
REVOKE ALL ON FUNCTION rd_decide(integer, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rd_decide(integer, text, text, text) TO riskdesk_app;

CREATE OR REPLACE FUNCTION rd_cancel(p_id integer, p_ws text DEFAULT '') RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE r change_requests;
BEGIN
  SELECT * INTO r FROM change_requests WHERE id = p_id FOR UPDATE;
  IF NOT FOUND OR r.status <> 'pending' THEN RAISE EXCEPTION 'change request % is not pending', p_id; END IF;
  IF r.maker <> session_user::text THEN
    RAISE EXCEPTION 'only the maker (%) can cancel change request %', r.maker, p_id
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  UPDATE change_requests SET status = 'cancelled', decided_at = now(), version = version + 1 WHERE id = p_id;
  PERFORM rd_audit_write(session_user::text, 'cancel', 'change_requests', p_id::text, '', '', p_id, p_ws);
  RETURN 'cancelled';
END $$;
REVOKE ALL ON FUNCTION rd_cancel(integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rd_cancel(integer, text) TO riskdesk_app;

CREATE OR REPLACE FUNCTION rd_expire(p_ws text DEFAULT '') RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE r record; n integer := 0;
BEGIN
  FOR r IN SELECT id FROM change_requests WHERE status = 'pending' AND expires_at < now() FOR UPDATE LOOP
    UPDATE change_requests SET status = 'expired', decided_at = now(), version = version + 1 WHERE id = r.id;
    PERFORM rd_audit_write('system', 'expire', 'change_requests', r.id::text, '', '', r.id, p_ws);
    n := n + 1;
  END LOOP;
  RETURN n;
END $$;
REVOKE ALL ON FUNCTION rd_expire(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rd_expire(text) TO riskdesk_app;
