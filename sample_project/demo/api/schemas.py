"""Pydantic bodies and replies of the demo API; bad input becomes FastAPI's 422."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Title = Annotated[str, Field(min_length=1, max_length=200)]
Amount = Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=2)]
OrderStatus = Literal["new", "paid", "shipped"]


class OrderIn(BaseModel):
    """Body of `POST /orders/`."""

    model_config = ConfigDict(extra="forbid")

    title: Title
    amount: Amount
    status: OrderStatus = "new"


class OrderPatch(BaseModel):
    """Body of `PATCH /orders/{id}/`: any subset of the fields, never null."""

    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    amount: Amount | None = None
    status: OrderStatus | None = None

    @field_validator("title", "amount", "status", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Defaults are not validated, so only an explicit `null` in the body gets here.
        if value is None:
            raise ValueError("may be left out but not null")
        return value


class OrderOut(BaseModel):
    """An order as the API shows it; `amount` is a string to keep it exact."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    amount: Decimal
    status: str
    created_at: datetime


class ReportIn(BaseModel):
    """Body of `POST /reports/`: what to build and how long the build pretends to take."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["sales", "orders"] = "sales"
    seconds: float = Field(2, ge=0, le=30)


class ReportOut(BaseModel):
    """A report with its content once ready."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    params: dict[str, Any]
    status: str
    content: dict[str, Any] | None
    created_at: datetime
    finished_at: datetime | None


class TokenIn(BaseModel):
    """Body of `POST /auth/token/`."""

    username: str
    password: str


class TokenOut(BaseModel):
    """A bearer token and its lifetime in seconds."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class UploadOut(BaseModel):
    """What the server received: compare `sha256` with the file you sent."""

    filename: str | None
    size: int
    sha256: str
