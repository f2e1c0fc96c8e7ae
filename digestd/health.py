"""/healthz: whether the daemon is alive (database, scheduler) and how each source and the last
delivery pass are doing."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .app import App


def health(app: "App", scheduler) -> tuple[bool, dict]:
    """Liveness for monitoring: the scheduler thread, the database, and the last fetch per source."""
    db_ok = app.store.ping()
    sched = None
    sched_ok = True
    if scheduler is not None:
        thread = getattr(scheduler, "_thread", None)
        alive = bool(scheduler.running) and (thread is None or thread.is_alive())
        sched = {"running": alive, "jobs": len(scheduler.get_jobs()) if alive else 0}
        sched_ok = alive
    sources = []
    if db_ok:
        from .safety import shown

        states = app.store.all_source_states()
        for src in app.settings.sources:
            st = states.get(src.name)
            failing = bool(st and st.error_count)
            sources.append({
                "name": src.name, "enabled": src.enabled,
                # Per source, so that monitoring sees which list is broken, not only that one is.
                "status": "disabled" if not src.enabled else "failing" if failing
                          else "ok" if st and st.last_success_at else "never fetched",
                "last_success": st.last_success_at.isoformat() if st and st.last_success_at else None,
                "last_attempt": st.last_attempt_at.isoformat() if st and st.last_attempt_at else None,
                "error_count": st.error_count if st else 0,
                "last_error": shown(st.last_error, 500) if failing and st.last_error else None,
                "next_retry": st.next_retry_at.isoformat() if failing and st.next_retry_at else None,
            })
    # The HTTP status is liveness (database, scheduler); a failing source, or a configuration problem
    # the last delivery pass met (digests stay pending until it is fixed), makes the body not ok.
    live = db_ok and sched_ok
    failing = [s["name"] for s in sources if s["status"] == "failing"]
    config_problem = getattr(app, "config_problem", None)
    ok = live and not failing and not config_problem
    return live, {"ok": ok, "status": "ok" if ok else "degraded" if live else "down", "failing_sources": failing,
                  "config": config_problem, "scheduler": sched, "database": db_ok, "sources": sources,
                  "now": app.clock.now().isoformat()}
