"""Users the route tests act as."""

import pytest
from httpx import AsyncClient

from tests.utils import UserAccount, create_account


@pytest.fixture
async def alice(client: AsyncClient) -> UserAccount:
    return await create_account(client)


@pytest.fixture
async def bob(client: AsyncClient) -> UserAccount:
    return await create_account(client)
