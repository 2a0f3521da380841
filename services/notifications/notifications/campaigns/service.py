"""Campaigns: drafts a coach edits, then one send that queues an email per recipient.

Nothing here commits: the request's transaction does, so a send either
queues every email and marks the campaign sent, or does neither. Sending
only inserts rows (deterministic ids, insert-or-ignore); the sender loop
delivers them, under its lease, so a worker that dies mid-campaign picks
up where it stopped without writing to anyone twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from sqlalchemy.ext.asyncio import AsyncSession

from kit.auth import CoachContext
from kit.db import utcnow
from kit.errors import Conflict, InvalidInput, NotFound
from kit.logging import get_logger
from notifications.audience.repository import AudienceRepository
from notifications.campaigns import schemas
from notifications.campaigns.rendering import CampaignContent, CampaignEmail
from notifications.campaigns.repository import CampaignRepository
from notifications.config import NotificationsSettings
from notifications.emails.headers import encode_headers
from notifications.emails.rendering import EmailRenderer, one_line
from notifications.emails.repository import EmailRepository
from notifications.emails.service import email_id
from notifications.models import (
    AUDIENCE_ALL,
    CAMPAIGN_SENT,
    CAMPAIGN_TEMPLATE,
    DRAFT,
    FAILED,
    QUEUED,
    SENDING,
    SENT,
    Campaign,
)
from notifications.unsubscribes.tokens import UnsubscribeTokens

log = get_logger(__name__)

# The emails of a campaign are "caused" by it: event_id is the campaign's id.
CAMPAIGN_EVENT_NAME = "notifications.campaign_sent"
SAMPLE_NAME = "Jamie Client"
UNKNOWN_BUSINESS_NAME = "your coach"
ONE_CLICK = "List-Unsubscribe=One-Click"
INSERT_CHUNK = 1000


@dataclass
class CampaignService:
    session: AsyncSession
    settings: NotificationsSettings
    renderer: EmailRenderer
    tokens: UnsubscribeTokens
    repo: CampaignRepository = field(init=False)
    audience: AudienceRepository = field(init=False)
    emails: EmailRepository = field(init=False)

    def __post_init__(self) -> None:
        self.repo = CampaignRepository(self.session)
        self.audience = AudienceRepository(self.session)
        self.emails = EmailRepository(self.session)

    # -- drafts -----------------------------------------------------------------

    async def page(self, business_id: uuid.UUID, limit: int, offset: int) -> schemas.CampaignPage:
        campaigns, total = await self.repo.page(business_id, limit, offset)
        return schemas.CampaignPage(
            items=await self._out(business_id, campaigns), total=total, limit=limit, offset=offset
        )

    async def get(self, business_id: uuid.UUID, campaign_id: uuid.UUID) -> schemas.CampaignOut:
        return await self._one(business_id, await self._find(business_id, campaign_id))

    async def create(
        self, coach: CoachContext, data: schemas.CampaignCreate
    ) -> schemas.CampaignOut:
        business_id = coach.business_id
        await self._check_audience(business_id, data.audience)
        now = utcnow()
        campaign = Campaign(
            id=uuid.uuid4(),
            business_id=business_id,
            created_by=coach.principal.account_id,
            subject=data.subject,
            body_markdown=data.body_markdown,
            discount_code=data.discount_code,
            audience_kind=data.audience.kind,
            audience_group_id=data.audience.group_id,
            status=DRAFT,
            created_at=now,
            updated_at=now,
            unsubscribed_count=0,
        )
        await self.repo.add(campaign)
        log.info("campaign_created", campaign_id=str(campaign.id))
        return await self._one(business_id, campaign)

    async def update(
        self, business_id: uuid.UUID, campaign_id: uuid.UUID, data: schemas.CampaignUpdate
    ) -> schemas.CampaignOut:
        campaign = await self._find(business_id, campaign_id, for_update=True)
        _must_be_draft(campaign)
        given = data.model_fields_set
        if "audience" in given:
            await self._check_audience(business_id, data.audience)
            campaign.audience_kind = data.audience.kind
            campaign.audience_group_id = data.audience.group_id
        if "subject" in given:
            campaign.subject = data.subject
        if "body_markdown" in given:
            campaign.body_markdown = data.body_markdown
        if "discount_code" in given:
            campaign.discount_code = data.discount_code
        campaign.updated_at = utcnow()
        await self.session.flush()
        return await self._one(business_id, campaign)

    async def delete(self, business_id: uuid.UUID, campaign_id: uuid.UUID) -> None:
        campaign = await self._find(business_id, campaign_id, for_update=True)
        _must_be_draft(campaign)
        await self.repo.delete(campaign)
        log.info("campaign_deleted", campaign_id=str(campaign_id))

    async def preview(
        self, business_id: uuid.UUID, campaign_id: uuid.UUID
    ) -> schemas.CampaignPreview:
        campaign = await self._find(business_id, campaign_id)
        email = await self._email(campaign)
        sample = email.for_recipient(SAMPLE_NAME, self._unsubscribe_url("example"))
        recipients, unsubscribed = await self.repo.audience_counts(
            business_id, campaign.audience_group_id
        )
        return schemas.CampaignPreview(
            subject=email.subject,
            html=sample.html_body,
            text=sample.text_body,
            recipient_count=recipients,
            unsubscribed_count=unsubscribed,
        )

    # -- sending ----------------------------------------------------------------

    async def send(self, business_id: uuid.UUID, campaign_id: uuid.UUID) -> schemas.CampaignOut:
        """Queue one email per recipient and mark the campaign sent, in this transaction.

        The row lock makes a second send wait for the first and then find it sent.
        """
        campaign = await self._find(business_id, campaign_id, for_update=True)
        _must_be_draft(campaign)
        group_id = campaign.audience_group_id
        if group_id is not None and not await self._group_exists(business_id, group_id):
            raise InvalidInput.for_field("audience.group_id", "this group no longer exists")
        members = await self.repo.audience(business_id, group_id)
        email = await self._email(campaign)  # Markdown and template rendered once
        now = utcnow()
        rows: list[dict[str, Any]] = []
        queued = unsubscribed = 0
        for member in members:
            if member.unsubscribed:
                unsubscribed += 1
                continue
            url = self._unsubscribe_url(self.tokens.issue(business_id, member.email))
            copy = email.for_recipient(one_line(member.display_name or "") or "there", url)
            rows.append(
                {
                    "id": email_id(campaign.id, CAMPAIGN_TEMPLATE, member.email),
                    "business_id": business_id,
                    "event_id": campaign.id,
                    "event_name": CAMPAIGN_EVENT_NAME,
                    "template": CAMPAIGN_TEMPLATE,
                    "recipient": member.email,
                    "subject": email.subject,
                    "text_body": copy.text_body,
                    "html_body": copy.html_body,
                    "status": QUEUED,
                    "attempts": 0,
                    "last_error": None,
                    "next_attempt_at": now,
                    "locked_until": None,
                    "created_at": now,
                    "sent_at": None,
                    "message_id": None,
                    # RFC 2369 and RFC 8058: the mail client's own unsubscribe button.
                    "extra_headers": encode_headers(
                        {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": ONE_CLICK}
                    ),
                }
            )
            if len(rows) == INSERT_CHUNK:  # bounded memory, whatever the audience's size
                await self.emails.insert_many_if_absent(rows)
                queued, rows = queued + len(rows), []
        await self.emails.insert_many_if_absent(rows)
        queued += len(rows)
        campaign.status = CAMPAIGN_SENT
        campaign.sent_at = now
        campaign.updated_at = now
        campaign.unsubscribed_count = unsubscribed
        await self.session.flush()
        log.info(
            "campaign_sent",
            campaign_id=str(campaign.id),
            recipients=queued,
            unsubscribed=unsubscribed,
        )
        return await self._one(business_id, campaign)

    # -- helpers ----------------------------------------------------------------

    async def _find(
        self, business_id: uuid.UUID, campaign_id: uuid.UUID, *, for_update: bool = False
    ) -> Campaign:
        campaign = await self.repo.get(business_id, campaign_id, for_update=for_update)
        if campaign is None:
            raise NotFound("No such campaign.")
        return campaign

    async def _group_exists(self, business_id: uuid.UUID, group_id: uuid.UUID) -> bool:
        group = await self.audience.group(business_id, group_id)
        return group is not None and not group.deleted and group.name is not None

    async def _check_audience(self, business_id: uuid.UUID, audience: schemas.AudienceIn) -> None:
        if audience.kind == AUDIENCE_ALL:
            return
        assert audience.group_id is not None  # the schema requires it for a group
        if not await self._group_exists(business_id, audience.group_id):
            raise InvalidInput.for_field("audience.group_id", "no such group in this business")

    async def _email(self, campaign: Campaign) -> CampaignEmail:
        business = await self.emails.business_by_id(campaign.business_id)
        content = CampaignContent(
            business_name=business.name if business else UNKNOWN_BUSINESS_NAME,
            subject=campaign.subject,
            body_markdown=campaign.body_markdown,
            discount_code=campaign.discount_code,
        )
        return CampaignEmail(self.renderer, content)

    def _unsubscribe_url(self, token: str) -> str:
        return self.settings.public_url(f"/unsubscribe?token={quote(token, safe='')}")

    async def _one(self, business_id: uuid.UUID, campaign: Campaign) -> schemas.CampaignOut:
        [out] = await self._out(business_id, [campaign])
        return out

    async def _out(
        self, business_id: uuid.UUID, campaigns: Sequence[Campaign]
    ) -> list[schemas.CampaignOut]:
        group_ids = [c.audience_group_id for c in campaigns if c.audience_group_id is not None]
        groups = await self.audience.groups(business_id, group_ids)
        counts = await self.emails.counts_by_status(
            business_id, CAMPAIGN_TEMPLATE, [c.id for c in campaigns]
        )
        items = []
        for campaign in campaigns:
            by_status = counts.get(campaign.id, {})
            group = groups.get(campaign.audience_group_id) if campaign.audience_group_id else None
            items.append(
                schemas.CampaignOut(
                    id=campaign.id,
                    subject=campaign.subject,
                    body_markdown=campaign.body_markdown,
                    discount_code=campaign.discount_code,
                    audience=schemas.AudienceOut(
                        kind=campaign.audience_kind,  # type: ignore[arg-type]
                        group_id=campaign.audience_group_id,
                        group_name=group.name if group else None,
                    ),
                    status=campaign.status,  # type: ignore[arg-type]
                    created_at=campaign.created_at,
                    sent_at=campaign.sent_at,
                    counts=schemas.Counts(
                        recipients=sum(by_status.values()),
                        queued=by_status.get(QUEUED, 0) + by_status.get(SENDING, 0),
                        sent=by_status.get(SENT, 0),
                        failed=by_status.get(FAILED, 0),
                        unsubscribed=campaign.unsubscribed_count,
                    ),
                )
            )
        return items


def _must_be_draft(campaign: Campaign) -> None:
    if campaign.status != DRAFT:
        raise Conflict("This campaign has been sent; it can no longer be changed or sent again.")
