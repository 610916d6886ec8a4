"""Who owns what the capture would use, before it is installed.

The capture's objects have fixed names (`public.sync_pipeline_buffer`, the
dead-letter table, one function per spec and table). An object of that name
created by another role — on PostgreSQL before 15 any role may create in
`public` — would be adopted silently: our SECURITY DEFINER triggers would write
every change into a table someone else can read, or run a function someone else
wrote. So install refuses any of them it does not own (directly, or as a member
of the owning role), and says when it runs as a superuser, whose rights the
trigger functions would then carry into every write of the application.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.engine import Connection


@dataclass(frozen=True)
class Owned:
    kind: str  # "table" or "function"
    name: str  # as given (regclass / regprocedure text)
    owner: str
    ours: bool  # the current role owns it, or is a member of the role that does


def relation_owner(conn: Connection, name: str) -> Owned | None:
    row = conn.exec_driver_sql(
        "SELECT pg_get_userbyid(c.relowner), pg_has_role(current_user, c.relowner, 'MEMBER') "
        "FROM pg_class c WHERE c.oid = to_regclass(%(n)s)",
        {"n": name},
    ).first()
    return None if row is None else Owned("table", name, row[0], bool(row[1]))


def function_owner(conn: Connection, signature: str) -> Owned | None:
    row = conn.exec_driver_sql(
        "SELECT pg_get_userbyid(p.proowner), pg_has_role(current_user, p.proowner, 'MEMBER') "
        "FROM pg_proc p WHERE p.oid = to_regprocedure(%(n)s)",
        {"n": signature},
    ).first()
    return None if row is None else Owned("function", signature, row[0], bool(row[1]))


def foreign_objects(conn: Connection, tables: Iterable[str], functions: Iterable[str]) -> list[Owned]:
    """The objects among `tables` and `functions` (`schema.name()` signatures) that exist and
    belong to a role the current one is not."""
    found = [relation_owner(conn, t) for t in tables] + [function_owner(conn, f) for f in functions]
    return [o for o in found if o is not None and not o.ours]


def function_grantees(conn: Connection, signature: str) -> list[str]:
    """The roles other than the owner holding a privilege on the function (PUBLIC aside)."""
    rows = conn.exec_driver_sql(
        "SELECT DISTINCT pg_get_userbyid(a.grantee) FROM pg_proc p, aclexplode(p.proacl) a "
        "WHERE p.oid = to_regprocedure(%(n)s) AND a.grantee <> 0 AND a.grantee <> p.proowner",
        {"n": signature},
    ).scalars()
    return sorted(rows)


def superuser_warning(conn: Connection, tables: Iterable[str]) -> str | None:
    """A warning when the current role is a superuser, naming the role that should install
    (the owner of the watched tables) instead; None otherwise."""
    row = conn.exec_driver_sql(
        "SELECT rolsuper, current_user FROM pg_roles WHERE rolname = current_user"
    ).one()
    if not row[0]:
        return None
    owners = sorted(
        {
            owner
            for t in tables
            if (owner := conn.exec_driver_sql(
                "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = to_regclass(%(t)s)", {"t": t}
            ).scalar()) is not None
        }
    )  # fmt: skip
    who = f"the role that owns the tables ({', '.join(owners)})" if owners else "the tables' owner"
    return (
        f"installing as superuser {row[1]}: the capture's SECURITY DEFINER functions run with "
        f"its rights in every write of the application. Install as {who} instead: it needs no "
        "more (docs/grants.md)"
    )
