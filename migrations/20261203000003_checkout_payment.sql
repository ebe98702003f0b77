-- The payment an order's checkout started: the provider asked, and the reference it gave back
-- (recorded right after the call). A payment event for the order must name them: another
-- provider's or another payment's success is refunded, anything else of theirs ignored.
alter table ticket_order
    add column checkout_provider    text,
    add column checkout_payment_ref text
        constraint ticket_order_checkout_ref_length check (length(checkout_payment_ref) between 1 and 255);
