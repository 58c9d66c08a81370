"""Configuration from environment variables. Nothing secret lives in the repository:
secrets come from the environment or are generated into the data directory on first use."""

import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    # Owner connection: runs migrations and owns the tables. Unset = embedded PostgreSQL under data/.
    database_url: str | None = Field(None, alias="DATABASE_URL")
    # Serving connection (role oms_app). Unset = DATABASE_URL with the oms_app role and a generated password.
    app_database_url: str | None = Field(None, alias="OMS_APP_DATABASE_URL")
    data_dir: Path = Field(PROJECT_ROOT / "data", alias="OMS_DATA_DIR")
    cookie_secret: SecretStr | None = Field(None, alias="OMS_COOKIE_SECRET")
    # How long a worker holds a claimed payment or notification before another worker may take it over
    # (a killed worker's work waits this long). Longer than the slowest gateway or SMTP answer.
    worker_lease_seconds: float = Field(60.0, alias="OMS_WORKER_LEASE_SECONDS", gt=0, le=3600)

    def secret(self, name: str) -> str:
        """A secret from the data directory, generated (mode 0600) the first time it is asked for."""
        path = self.data_dir / "secrets" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(32))
        return path.read_text().strip()

    def cookie_key(self) -> str:
        return self.cookie_secret.get_secret_value() if self.cookie_secret else self.secret("cookie_secret")


@lru_cache
def get_settings() -> Settings:
    return Settings()
