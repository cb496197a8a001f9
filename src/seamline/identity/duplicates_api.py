"""Staff routes under /api/v1: merge two customers, review duplicate suggestions, import a CSV.

The suggestion listing is ``/duplicate-suggestions``, not under ``/profiles/…``, where
``/profiles/{profile_id}`` would capture it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from seamline.api.deps import DB, CurrentCaller, scoped
from seamline.api.problems import problem
from seamline.identity import customers_import, duplicates, merges
from seamline.kit.errors import FieldError, Unprocessable
from seamline.kit.pagination import MAX_LIMIT

router = APIRouter(tags=["customers"])

ProfileId = Annotated[str, Path(max_length=40)]
_ID = Field(min_length=1, max_length=40, pattern=r"^[a-z0-9_]+$")
_REASON = r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$"
MinScore = Annotated[float, Query(ge=0, le=100, description="Lowest combined score shown.")]


# -- schemas ---------------------------------------------------------------------------------


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    profile_id: str = _ID
    reason: str = Field(min_length=1, max_length=200, pattern=_REASON)


class MergeOut(BaseModel):
    merge_id: str
    profile_id: str
    other_profile_id: str
    cluster_id: str = Field(description="The merged cluster's canonical profile.")
    profile_ids: list[str]


class FieldMatchOut(BaseModel):
    field: str = Field(description="name, postal_code, street, city, email_local_part, …")
    a: str
    b: str
    score: float = Field(description="0-100")
    method: str = Field(description="How it was compared: equal, ratio, token_sort_ratio, …")


class SuggestedCustomer(BaseModel):
    cluster_id: str
    name: str | None = None
    street: str | None = None
    city: str | None = None
    postal_code: str | None = None


class SuggestionOut(BaseModel):
    a: SuggestedCustomer
    b: SuggestedCustomer
    score: float = Field(description="0-100; see docs/identity.md for how it is computed.")
    evidence: list[FieldMatchOut]


class SuggestionPage(BaseModel):
    data: list[SuggestionOut]
    next_cursor: str | None = Field(default=None, description="Opaque cursor; null at the end.")
    blocks_skipped: int = Field(
        0, description="Blocks too large to compare pairwise (see docs/identity.md)."
    )
    truncated: bool = Field(
        False, description="True when the pair cap was reached: some candidates were not scored."
    )


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    profile_id: str = _ID
    other_profile_id: str = _ID
    decision: Literal["dismissed", "merged"]
    reason: str | None = Field(default=None, min_length=1, max_length=200, pattern=_REASON)


class DecisionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    profile_a_id: str
    profile_b_id: str
    decision: str
    score: float | None
    reason: str | None
    decided_by: str | None
    decided_at: Any
    merge_id: str | None


def _out(s: duplicates.Suggestion) -> SuggestionOut:
    return SuggestionOut(
        a=SuggestedCustomer(cluster_id=s.a.cluster_id, **s.a.display),
        b=SuggestedCustomer(cluster_id=s.b.cluster_id, **s.b.display),
        score=s.score,
        evidence=[FieldMatchOut(**e.__dict__) for e in s.evidence],
    )


# -- staff merge -----------------------------------------------------------------------------


@router.post(
    "/profiles/{profile_id}/merge",
    responses={
        **problem(404, "No such profile"),
        **problem(409, "Already one customer, or two different accounts"),
    },
    **scoped("customers:write"),
)
def merge(profile_id: ProfileId, body: MergeIn, db: DB, caller: CurrentCaller) -> MergeOut:
    """Merge the customer of `profile_id` with the customer of `body.profile_id` (a staff
    decision, undone with `/unmerge`). Two different values of a unique kind (two accounts,
    two loyalty cards) are refused with 409 `unique_kind_conflict`."""
    with db.transaction() as session:
        done = merges.merge_profiles(
            session, profile_id, body.profile_id, reason=body.reason, by=caller.key_id
        )
    return MergeOut(**done.__dict__)


# -- duplicate suggestions -------------------------------------------------------------------


@router.get("/duplicate-suggestions", **scoped("customers:read"))
def list_suggestions(
    db: DB,
    cursor: Annotated[
        str | None,
        Query(
            max_length=90,
            pattern=r"^[0-9]{1,4}\.[a-z0-9_]{1,40}\.[a-z0-9_]{1,40}$",
            description="`next_cursor` of the previous page.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    min_score: MinScore = duplicates.MIN_SCORE,
) -> SuggestionPage:
    """Pairs of customers that may be the same person, best first, for review. Nothing is
    merged automatically; dismissed pairs are not listed again."""
    with db.transaction(readonly=True) as session:
        listing = duplicates.list_suggestions(
            session, min_score=min_score, limit=limit, cursor=cursor
        )
    return SuggestionPage(
        data=[_out(s) for s in listing.suggestions],
        next_cursor=listing.next_cursor,
        blocks_skipped=listing.blocks_skipped,
        truncated=listing.truncated,
    )


@router.get(
    "/profiles/{profile_id}/duplicate-suggestions",
    responses=problem(404, "No such profile"),
    **scoped("customers:read"),
)
def profile_suggestions(
    profile_id: ProfileId,
    db: DB,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
    min_score: MinScore = duplicates.MIN_SCORE,
) -> list[SuggestionOut]:
    """Customers that may be the same person as this one, best first."""
    with db.transaction(readonly=True) as session:
        found = duplicates.suggestions_for(session, profile_id, min_score=min_score, limit=limit)
    return [_out(s) for s in found]


@router.post(
    "/duplicate-suggestions/decisions",
    responses={
        **problem(404, "No such profile"),
        **problem(409, "Already one customer, or two different accounts"),
    },
    **scoped("customers:write"),
)
def decide(body: DecisionIn, db: DB, caller: CurrentCaller) -> DecisionOut:
    """Dismiss a suggested pair (not suggested again) or merge it (a staff merge; the answer
    carries its `merge_id` for `/unmerge`)."""
    with db.transaction() as session:
        row = duplicates.decide(
            session,
            body.profile_id,
            body.other_profile_id,
            decision=body.decision,
            reason=body.reason,
            by=caller.key_id,
        )
        return DecisionOut.model_validate(row)


# -- CSV import ------------------------------------------------------------------------------

CSV_CONTENT = {"text/csv": {"schema": {"type": "string"}}}


def _with_csv_body(kwargs: dict[str, Any]) -> dict[str, Any]:
    extra = dict(kwargs["openapi_extra"])
    extra["requestBody"] = {"required": True, "content": CSV_CONTENT}
    return {**kwargs, "openapi_extra": extra}


@router.post(
    "/customers/imports",
    responses=problem(409, "A row would join two different accounts"),
    **_with_csv_body(scoped("customers:write")),
)
async def import_customers(
    request: Request,
    db: DB,
    caller: CurrentCaller,
    source: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$",
            description="The system the file comes from, for rows without a `source` cell.",
        ),
    ] = None,
    dry_run: Annotated[bool, Query(description="Check the file; write nothing.")] = False,
) -> customers_import.ImportReport:
    """Import customers from a CSV (docs/identity.md, "Importing customers") all or nothing:
    a bad row refuses the whole file with a 422 listing `row.<n>.<column>` problems. Bodies
    over the API's 1 MiB limit are refused with 413; import larger files with the CLI."""
    raw = await request.body()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Unprocessable(
            "the CSV is not UTF-8 text",
            code="csv_unreadable",
            errors=[FieldError("body", f"not UTF-8 at byte {exc.start}", "not_utf8")],
        ) from exc

    def work() -> customers_import.ImportReport:
        parsed = customers_import.parse(text, source=source)
        if parsed.errors:
            raise customers_import.refuse(parsed)
        with db.transaction() as session:
            return customers_import.import_rows(
                session, parsed, name="api", by=caller.key_id, dry_run=dry_run
            )

    return await run_in_threadpool(work)
