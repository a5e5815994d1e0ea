-- Several Twilio accounts ([accounts.NAME]): a customer's known agent is per account, since
-- an agent of one account's Flex never takes another's tasks. Rows written before carry
-- account_sid '' until start-up gives them to the deployment's one account.
ALTER TABLE known_agents ADD COLUMN account_sid TEXT NOT NULL DEFAULT '';
ALTER TABLE known_agents DROP CONSTRAINT known_agents_pkey;
ALTER TABLE known_agents ADD PRIMARY KEY (account_sid, customer_key);
