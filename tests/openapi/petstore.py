"""A small pet store API (FastAPI) for the OpenAPI tools to call, behind an API key."""

from __future__ import annotations

from typing import Literal

from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel

__all__ = ["Pet", "Store", "petstore"]


class Pet(BaseModel):
    name: str
    species: Literal["dog", "cat"]


class Stored(Pet):
    id: int


class Store:
    """What the server holds, and the API keys that reached it."""

    def __init__(self) -> None:
        self.pets: dict[int, Stored] = {1: Stored(id=1, name="Rex", species="dog")}
        self.keys: list[str] = []


def petstore(token: str, store: Store) -> FastAPI:
    app = FastAPI(title="Pets", version="1")

    def api_key(x_api_key: str = Header(alias="X-API-Key")) -> str:
        store.keys.append(x_api_key)
        if x_api_key != token:
            # Careless servers echo what they were sent: the tool must mask it.
            raise HTTPException(401, f"unknown API key {x_api_key}")
        return x_api_key

    @app.get("/pets/{pet_id}", operation_id="getPet", dependencies=[Depends(api_key)])
    def get_pet(pet_id: int) -> Stored:
        """Find a pet by its id."""
        if pet_id not in store.pets:
            raise HTTPException(404, f"no pet {pet_id}")
        return store.pets[pet_id]

    @app.get("/pets", operation_id="listPets", dependencies=[Depends(api_key)])
    def list_pets(limit: int = 10, species: Literal["dog", "cat"] | None = None) -> list[Stored]:
        """List pets, of one species or all."""
        found = [p for p in store.pets.values() if species is None or p.species == species]
        return found[:limit]

    @app.post("/pets", operation_id="createPet", status_code=201, dependencies=[Depends(api_key)])
    def create_pet(pet: Pet) -> Stored:
        """Add a pet."""
        stored = Stored(id=max(store.pets) + 1, **pet.model_dump())
        store.pets[stored.id] = stored
        return stored

    @app.get("/whoami", operation_id="whoAmI")
    def who_am_i(key: str = Depends(api_key)) -> dict[str, str]:
        """Say which key called (an echo, as some APIs do)."""
        return {"key": key}

    return app
