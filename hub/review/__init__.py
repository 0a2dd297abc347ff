"""The manual secrecy review: the region's queue of records and the reviewers' decisions.

:mod:`hub.review.records` checks and stores records (every way in ends there),
:mod:`hub.review.queue` pages through the queue (metadata, personnummer masked),
:mod:`hub.review.views` opens one record with its history (access-logged),
:mod:`hub.review.decide` records decisions and queues approved records for sending.
"""
