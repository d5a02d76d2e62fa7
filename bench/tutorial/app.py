"""The FastAPI tutorial stack this service grew from, as a yardstick for bench/compare.py.

What FastAPI's own tutorials and its full-stack template teach, kept faithful on purpose:
sync `def` routes and dependencies (FastAPI runs each in its thread pool), a SQLAlchemy ORM
`Session` per request on a SQLite file, one uvicorn process, and OAuth2 password flow with JWT
bearer tokens (PyJWT) whose subject is a row of a users table read on every request. Not part of
the service; nothing in service/ imports it.

    TUTORIAL_DATABASE_URL=sqlite:////tmp/t.db TUTORIAL_SECRET_KEY=... \
        uvicorn bench.tutorial.app:app
"""

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated

import jwt
from fastapi import Depends, FastAPI, HTTPException, Query, status
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from pwdlib import PasswordHash
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ForeignKey, String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

DATABASE_URL = os.environ.get("TUTORIAL_DATABASE_URL", "sqlite:///./tutorial.db")
SECRET_KEY = os.environ.get("TUTORIAL_SECRET_KEY", "")
ALGORITHM = "HS256"
ACCESS_TOKEN_EXPIRE_MINUTES = int(os.environ.get("TUTORIAL_TOKEN_MINUTES", "600"))

# check_same_thread=False: the tutorial's setting, since sync routes run in worker threads.
engine = create_engine(DATABASE_URL, connect_args={"check_same_thread": False})
password_hash = PasswordHash.recommended()
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/token")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True, index=True)
    full_name: Mapped[str | None] = mapped_column(String(255))
    hashed_password: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(default=True)


class Todo(Base):
    __tablename__ = "todos"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(1000))
    completed: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=lambda: datetime.now(UTC))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)


class UserCreate(BaseModel):
    email: str = Field(max_length=255)
    password: str = Field(min_length=8, max_length=128)
    full_name: str | None = Field(default=None, max_length=255)


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    full_name: str | None
    is_active: bool


class TodoCreate(BaseModel):
    text: str = Field(min_length=1, max_length=1000)
    completed: bool = False


class TodoUpdate(BaseModel):
    text: str | None = Field(default=None, min_length=1, max_length=1000)
    completed: bool | None = None


class TodoPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    text: str
    completed: bool
    created_at: datetime
    owner_id: int


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"


def get_session() -> Iterator[Session]:
    with Session(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
TokenDep = Annotated[str, Depends(oauth2_scheme)]


def get_current_user(session: SessionDep, token: TokenDep) -> User:
    unauthorized = HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="Could not validate credentials",
        headers={"WWW-Authenticate": "Bearer"},
    )
    try:
        payload = jwt.decode(token, SECRET_KEY, algorithms=[ALGORITHM])
        user_id = int(payload["sub"])
    except (jwt.InvalidTokenError, KeyError, ValueError):
        raise unauthorized from None
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        raise unauthorized
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    if len(SECRET_KEY) < 32:
        raise RuntimeError("set TUTORIAL_SECRET_KEY (32 characters or more)")
    Base.metadata.create_all(engine)
    yield


app = FastAPI(title="FastAPI tutorial stack (bench yardstick)", lifespan=lifespan)


@app.get("/api/health")
def health() -> dict[str, str]:
    """Liveness, for the bench's start-up check."""
    return {"status": "ok"}


@app.post("/api/users", status_code=status.HTTP_201_CREATED)
def sign_up(body: UserCreate, session: SessionDep) -> UserPublic:
    """Create a user."""
    if session.scalar(select(User).where(User.email == body.email)) is not None:
        raise HTTPException(status_code=400, detail="The email is already registered")
    user = User(
        email=body.email,
        full_name=body.full_name,
        hashed_password=password_hash.hash(body.password),
    )
    session.add(user)
    session.commit()
    session.refresh(user)
    return UserPublic.model_validate(user)


@app.post("/api/token")
def log_in(form: Annotated[OAuth2PasswordRequestForm, Depends()], session: SessionDep) -> Token:
    """Exchange an email and password for a bearer token."""
    user = session.scalar(select(User).where(User.email == form.username))
    if user is None or not password_hash.verify(form.password, user.hashed_password):
        raise HTTPException(status_code=400, detail="Incorrect email or password")
    expire = datetime.now(UTC) + timedelta(minutes=ACCESS_TOKEN_EXPIRE_MINUTES)
    token = jwt.encode({"sub": str(user.id), "exp": expire}, SECRET_KEY, algorithm=ALGORITHM)
    return Token(access_token=token)


@app.get("/api/me")
def read_me(user: CurrentUser) -> UserPublic:
    """The caller."""
    return UserPublic.model_validate(user)


@app.get("/api/todos")
def list_todos(
    user: CurrentUser,
    session: SessionDep,
    skip: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
) -> list[TodoPublic]:
    """The caller's todos, newest first."""
    todos = session.scalars(
        select(Todo)
        .where(Todo.owner_id == user.id)
        .order_by(Todo.id.desc())
        .offset(skip)
        .limit(limit)
    )
    return [TodoPublic.model_validate(todo) for todo in todos]


@app.post("/api/todos", status_code=status.HTTP_201_CREATED)
def create_todo(body: TodoCreate, user: CurrentUser, session: SessionDep) -> TodoPublic:
    """A new todo of the caller's."""
    todo = Todo(**body.model_dump(), owner_id=user.id)
    session.add(todo)
    session.commit()
    session.refresh(todo)
    return TodoPublic.model_validate(todo)


@app.patch("/api/todos/{todo_id}")
def update_todo(
    todo_id: int, body: TodoUpdate, user: CurrentUser, session: SessionDep
) -> TodoPublic:
    """Change some fields of one of the caller's todos."""
    todo = session.get(Todo, todo_id)
    if todo is None or todo.owner_id != user.id:
        raise HTTPException(status_code=404, detail="Todo not found")
    for key, value in body.model_dump(exclude_unset=True).items():
        setattr(todo, key, value)
    session.add(todo)
    session.commit()
    session.refresh(todo)
    return TodoPublic.model_validate(todo)
