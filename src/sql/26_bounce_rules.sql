-- ---------------------------------------------------------------------------
-- The shipped bounce rules (seeded rows of pw.bounce_rules)
-- ---------------------------------------------------------------------------
--
-- Order of the groups (position):
--   100-199  providers' own documented replies, including the misleading
--            ones (an address-like code on a block, a block-like code or
--            stage on a dead mailbox): they win over everything below
--   200-299  texts that name the sender's problem whatever the code says:
--            greylisting, blocklists, authentication, reputation, rate
--            limits, relaying, the sender or client refused, content
--   300-399  the stage: a refusal at connect, HELO, MAIL FROM or DATA is
--            not about the recipient's mailbox
--   400-499  texts about the recipient: unknown mailbox or domain,
--            disabled, moved, full; the MTA's own network texts; protocol
--   500-599  RFC 3463 enhanced status codes (and RFC 7372, RFC 7505)
-- Nothing matching: 'other'.

INSERT INTO pw.bounce_rules (name, position, status_pattern, code_pattern, reply_pattern, stage, category, note, seeded)
SELECT name, position, status_pattern, code_pattern, reply_pattern, stage, category, note, true FROM (VALUES
    -- Yahoo / AOL (postmaster.yahooinc.com error codes)
    ('yahoo.dd_disabled',        100, NULL, NULL, 'delivery error: dd .*(mailbox (is )?disabled|account (is )?(disabled|inactive))', 'any', 'inactive_mailbox',
     'Yahoo answers a disabled mailbox at end of DATA: "554 delivery error: dd ... This mailbox is disabled (554.30)"'),
    ('yahoo.dd_no_account',      101, NULL, NULL, 'delivery error: dd (this user doesn.t have a|sorry,? your message to|requested mail action aborted|not a valid recipient)', 'any', 'bad_mailbox',
     'Yahoo answers an unknown user at end of DATA: "554 delivery error: dd This user doesn''t have a yahoo.com account"'),
    ('yahoo.tss09',              102, NULL, NULL, '\[TSS09\]|all messages from \S+ will be permanently deferred', 'any', 'blocklisted',
     'Yahoo "553 5.7.2 [TSS09] All messages from [IP] will be permanently deferred": the IP is blocked'),
    ('yahoo.tss',                103, NULL, NULL, '\[TSS[0-9][0-9]\]|temporarily deferred due to unexpected volume or user complaints', 'any', 'reputation',
     'Yahoo "421 4.7.0 [TSS04] Messages from [IP] temporarily deferred due to unexpected volume or user complaints"'),
    ('yahoo.ts_content',         104, NULL, NULL, '\[TS0[1-3]\]|message not accepted for policy reasons', 'any', 'spam_content',
     'Yahoo "554 5.7.9 Message not accepted for policy reasons" / [TS01]-[TS03]: the content'),
    ('yahoo.mailbox_unavailable',105, NULL, '552', 'requested mail action aborted, mailbox not found', 'any', 'bad_mailbox',
     'Yahoo "552 1 Requested mail action aborted, mailbox not found": an unknown mailbox with 552'),
    -- Microsoft 365, Outlook.com (Exchange Online NDR and Outlook.com error codes)
    ('microsoft.dbeb',           110, NULL, NULL, 'recipient address rejected: access denied\. AS\(201806281\)', 'any', 'bad_mailbox',
     'Exchange Online directory-based edge blocking: "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)" means no such recipient'),
    ('microsoft.recipient_not_found', 111, NULL, NULL, 'RESOLVER\.ADR\.(RecipientNotFound|RecipNotFound|ExRecipNotFound)|Recipient not found by SMTP address lookup', 'any', 'bad_mailbox',
     'Exchange "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"'),
    ('microsoft.s3150',          112, NULL, NULL, '\(S31[0-9][0-9]\)|part of their network is on our block list', 'any', 'blocklisted',
     'Outlook.com "550 5.7.1 ... part of their network is on our block list (S3150)"'),
    ('microsoft.banned_ip',      113, NULL, NULL, 'banned sending IP|banned sender|traffic not accepted from this IP|5\.7\.(511|606|708)', 'any', 'blocklisted',
     'Exchange Online 5.7.511 banned sender, 5.7.606 banned sending IP, 5.7.708 traffic not accepted from this IP'),
    ('microsoft.ip_reputation',  114, NULL, NULL, '4\.7\.650|rate limited due to IP reputation|4\.7\.(651|652)', 'any', 'reputation',
     'Outlook.com "451 4.7.650 The mail server [IP] has been temporarily rate limited due to IP reputation"'),
    ('microsoft.server_busy',    115, NULL, NULL, '4\.7\.500 Server busy|Server busy\. Please try again later', 'any', 'rate_limited',
     'Outlook.com "451 4.7.500 Server busy. Please try again later from [IP]"'),
    ('microsoft.unregistered_domain', 116, NULL, NULL, '5\.7\.750|unregistered domains?', 'any', 'policy',
     'Exchange Online "550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains"'),
    ('microsoft.dmarc',          117, NULL, NULL, '5\.7\.(509|515)|does not pass DMARC|doesn.t meet the required authentication level', 'any', 'authentication',
     'Exchange Online 5.7.509 sender fails DMARC, 5.7.515 required authentication level (SPF, DKIM, DMARC)'),
    ('microsoft.spam',           118, NULL, NULL, '5\.7\.350|detected as spam|SC-00[0-9]|DY-00[0-9]', 'any', 'spam_content',
     'Outlook.com SC-001/DY-001 filtered, Exchange 5.7.350 remote server returned message detected as spam'),
    ('microsoft.group_restricted', 119, NULL, NULL, 'RESOLVER\.RST\.|5\.7\.(129|133|134|135|136)|not authorized to send to this (recipient|group)', 'any', 'policy',
     'Exchange 5.7.129-5.7.136: the recipient (a group) accepts only some senders'),
    ('microsoft.mailbox_disabled', 120, NULL, NULL, 'RESOLVER\.ADR\.RecipLimit|mailbox (is )?(disabled|inactive)|5\.2\.1 .*(disabled|inactive)', 'any', 'inactive_mailbox',
     'Exchange: the recipient''s mailbox is disabled'),
    -- Gmail / Google Workspace (Google''s SMTP error reference)
    ('gmail.receiving_rate',     130, NULL, NULL, 'receiving mail (at a rate|too quickly)|receiving mail at a rate that prevents additional messages', 'any', 'rate_limited',
     'Gmail "4.2.1/5.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages": the recipient is flooded, the address exists'),
    ('gmail.unsolicited',        131, NULL, NULL, 'likely unsolicited mail|unusual rate of unsolicited mail|4\.7\.28', 'any', 'reputation',
     'Gmail "550-5.7.1 ... this message is likely unsolicited mail", "421-4.7.28 ... unusual rate of unsolicited mail"'),
    ('gmail.authentication',     132, NULL, NULL, '5\.7\.2[3-7]|does not have authentication information|fails? to pass authentication checks|sender is unauthenticated|this mail is unauthenticated', 'any', 'authentication',
     'Gmail 5.7.26 unauthenticated (DMARC), 5.7.27 SPF, 4.7.0 "does not have authentication information"'),
    ('gmail.policy',             133, NULL, NULL, 'has a policy that prohibited the mail|IP not in whitelist|not allowed to send to this domain', 'any', 'policy',
     'Google Workspace "550 5.7.1 The user or domain that you are sending to (or from) has a policy that prohibited the mail"'),
    ('gmail.disabled',           134, NULL, NULL, 'the email account that you tried to reach is (disabled|inactive)|account that you tried to reach is disabled', 'any', 'inactive_mailbox',
     'Gmail "550-5.2.1 The email account that you tried to reach is disabled"'),
    ('gmail.over_quota',         135, NULL, NULL, 'account that you tried to reach is over quota|out of storage space', 'any', 'mailbox_full',
     'Gmail "452-4.2.2 The email account that you tried to reach is over quota"'),
    ('gmail.no_such_user',       136, NULL, NULL, 'the email account that you tried to reach does not exist|p=NoSuchUser', 'any', 'bad_mailbox',
     'Gmail "550-5.1.1 The email account that you tried to reach does not exist"'),
    -- Apple iCloud (support.apple.com HT204137)
    ('icloud.blocked',           140, NULL, NULL, 'HT204137|\[(CS0[0-9]|HM0[0-9])\]', 'any', 'policy',
     'iCloud "550 5.7.0 Blocked - see https://support.apple.com/en-us/HT204137", "554 5.7.1 [CS01] Message rejected due to local policy"'),
    -- Comcast (postmaster.comcast.net)
    ('comcast.not_customer',     150, NULL, NULL, 'Not our Customer', 'any', 'bad_mailbox',
     'Comcast "550 5.1.1 <x@comcast.net> Not our Customer": no such mailbox'),
    ('comcast.blocklist',        151, NULL, NULL, '\bBL0000[0-9][0-9]\b|comcast block for spam', 'any', 'blocklisted',
     'Comcast "554 ... BL000010": the sending IP is on Comcast''s block list'),
    ('comcast.rate',             152, NULL, NULL, '\bRL0000[0-9][0-9]\b', 'any', 'rate_limited',
     'Comcast "421 ... RL000001": too many messages or connections'),
    ('comcast.ptr',              153, NULL, NULL, 'requires that all mail servers must have a PTR record', 'any', 'policy',
     'Comcast: the sending IP needs reverse DNS'),
    -- GoDaddy / secureserver.net, Cox
    ('godaddy.rate',             160, NULL, NULL, 'IB60[0-9]|sent to too many recipients|too many recipients this hour', 'any', 'rate_limited',
     'secureserver.net "550 5.1.1 ... has sent to too many recipients this hour. IB607": a rate limit with an address-like code'),
    ('godaddy.ib_block',         161, NULL, NULL, '\bIB(10[0-9]|11[0-9]|212)\b', 'any', 'blocklisted',
     'secureserver.net IB1xx/IB212: the sending IP is blocked'),
    ('cox.aup_rbl',              162, NULL, NULL, 'AUP#(CDRBL|RBL|BL|DNSBL|CXBL|IPBL)', 'any', 'blocklisted',
     'Cox "550 5.1.0 ... sender rejected ... AUP#CDRBL": the sender is on a blocklist'),
    ('cox.aup_rate',             163, NULL, NULL, 'AUP#(MXRT|O-1000|CXCNCT|CXMXRT)', 'any', 'rate_limited',
     'Cox AUP#MXRT: too many messages'),
    -- Mimecast, Proofpoint, Barracuda (their published rejection texts)
    ('mimecast.invalid_recipient', 170, NULL, NULL, '^Invalid Recipient|550 Invalid Recipient', 'any', 'bad_mailbox',
     'Mimecast "550 Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550"'),
    ('mimecast.policy',          171, NULL, NULL, 'Anti-Spoofing policy|envelope blocked|Administrative prohibition|rejected due to security policies', 'any', 'policy',
     'Mimecast "550 Rejected by header based Anti-Spoofing policy", "550 Administrative prohibition - envelope blocked"'),
    ('mimecast.ip_reputation',   172, NULL, NULL, 'Rejected by IP Reputation|IP reputation', 'any', 'reputation',
     'Mimecast "550 Rejected by IP Reputation"'),
    ('proofpoint.ipcheck',       173, NULL, NULL, 'ipcheck\.proofpoint\.com', 'any', 'blocklisted',
     'Proofpoint "554 Blocked - see https://ipcheck.proofpoint.com/?ip=..."'),
    ('barracuda.reputation',     174, NULL, NULL, 'barracudanetworks\.com/reputation|Barracuda Reputation|barracudacentral', 'any', 'blocklisted',
     'Barracuda "554 Service unavailable; Client host [IP] blocked using Barracuda Reputation"'),
    ('barracuda.recipient_blocked', 175, NULL, NULL, 'permanent failure for one or more recipients \([^)]*:blocked\)', 'any', 'spam_content',
     'Barracuda "550 permanent failure for one or more recipients (x:blocked)": the message was blocked'),

    -- The sender's problem, whatever the code
    ('text.greylisting',         200, NULL, NULL, 'gr[ae]y-?list|gr[ae]y listed|try again in [0-9]+ (seconds|minutes)|please retry (later|in)', 'any', 'greylisted', NULL),
    ('text.blocklist',           210, NULL, NULL, 'blocked using|black-?list|block-?list|block list|blacklisted|blocklisted|spamhaus|spamcop|sorbs|\bdnsbl\b|\brbl\b|\buceprotect|psbl\.|abuseat\.org|\bcbl\b', 'any', 'blocklisted', NULL),
    ('text.authentication',      220, NULL, NULL, '\bspf\b|\bdkim\b|\bdmarc\b|sender policy framework|unauthenticated|not authenticated|authentication (check|checks) fail|fails? authentication', 'any', 'authentication', NULL),
    ('text.reputation',          230, NULL, NULL, 'reputation|unsolicited|too many complaints|user complaints|poor sending|sender score|suspicious (activity|sender)', 'any', 'reputation', NULL),
    ('text.rate',                240, NULL, NULL, 'too many (connections|concurrent|messages|recipients|mails|emails|sessions)|rate limit|rate-limit|ratelimit|throttl|sending rate|too fast|exceeded the (rate|limit)|limit exceeded|temporarily deferred|deferred due to', 'any', 'rate_limited', NULL),
    ('text.relaying',            250, NULL, NULL, 'relay(ing)? (access )?(denied|not permitted|not allowed|prohibited)|not permitted to relay|unable to relay|relay not permitted|open relay|we do not relay|not a gateway', 'any', 'relaying_denied', NULL),
    ('text.sender_rejected',     260, NULL, NULL, 'sender (address )?(rejected|refused|denied|blocked|not allowed)|sender address rejected|client host rejected|reverse (dns|lookup|hostname)|\bptr\b|\brdns\b|helo command rejected|cannot find your (hostname|reverse)|sender domain|from domain|envelope sender|bad sender|invalid sender|sender verify failed|mail from', 'any', 'policy', NULL),
    ('text.content',             270, NULL, NULL, '\bspam\b|\bjunk\b|\bvirus\b|malware|phish|content (rejected|filter|policy)|message (content )?(rejected|refused|blocked) (as|because)|prohibited attachment|attachment (type )?(not allowed|rejected|blocked)|bulk mail|url blocklist|message looks like', 'any', 'spam_content', NULL),

    -- The stage: not the recipient's mailbox
    ('stage.connect',            300, NULL, NULL, NULL, 'connect', 'policy', 'a refusal at connect (refused to talk to me) is about the sending host'),
    ('stage.helo',               301, NULL, NULL, NULL, 'helo', 'policy', 'a refusal of HELO/EHLO is about the sending host'),
    ('stage.mail',               302, NULL, NULL, NULL, 'mail', 'policy', 'a refusal of MAIL FROM is about the sender'),
    ('stage.data',               303, NULL, NULL, NULL, 'data', 'policy', 'a refusal of the message (DATA, end of DATA) is about the message'),

    -- About the recipient
    ('text.disabled',            400, NULL, NULL, '(account|mailbox|user|address)( has been| is)? (disabled|deactivated|suspended|closed|inactive|locked|expired|frozen)|no longer (active|in use|available|with|employed)|inactive (account|user|mailbox)', 'any', 'inactive_mailbox', NULL),
    ('text.moved',               401, NULL, NULL, '(mailbox|user|address|recipient) (has )?moved|no longer at this address|changed (his|her|their) (e-?mail )?address', 'any', 'mailbox_moved', NULL),
    ('text.over_quota',          402, NULL, NULL, 'over quota|quota (exceeded|full)|exceeded (the |its |their )?(storage|quota|mailbox size)|mailbox (is )?full|mailbox size limit|insufficient (system )?storage|out of (disk|storage) space|full mailbox', 'any', 'mailbox_full', NULL),
    ('text.no_such_host',        409, '5\.[0-9]+\.[0-9]+', NULL, 'host or domain name not found', 'any', 'bad_domain',
     'Postfix gives up on a domain whose name does not resolve (NXDOMAIN) with a permanent status; a temporary DNS failure is a 4.x deferral (routing)'),
    ('text.bad_domain',          410, NULL, NULL, 'host or domain name not found\. Name service error for name=\S+ type=(MX|A|AAAA): Host not found$|domain (does not|doesn.t) exist|domain (not found|unknown)|no such domain|unrouteable (mail )?domain|null MX|does not accept mail|domain (is )?(not|no longer) (valid|in use|accepting mail)', 'any', 'bad_domain', NULL),
    ('text.unknown_user',        411, NULL, NULL, 'user unknown|unknown (user|recipient|mailbox|local.?part|address)|no such (user|recipient|mailbox|account|address|person)|(user|mailbox|recipient|account|address|email address)( name)? (does not|doesn.t|did not|not) exist|(user|mailbox|recipient|address) (not found|unavailable|is unavailable|not known|invalid)|invalid (recipient|mailbox|user|address|e-?mail)|not a valid (mailbox|recipient|user|address)|undeliverable address|no mailbox (here|by that name)|unrouteable address|mailbox not found|bad destination mailbox|addressee unknown|not listed in|no valid recipients|is not a known user', 'any', 'bad_mailbox', NULL),
    ('text.network',             440, NULL, NULL, 'connection (timed out|refused)|no route to host|network is unreachable|host (is )?unreachable|host not found, try again|name service error|host or domain name not found|temporary failure in name resolution|no answer|timed out while (connecting|receiving the initial server greeting)|conversation with \S+ timed out', 'any', 'routing', NULL),
    ('text.protocol',            450, NULL, NULL, 'lost connection|syntax error|command (not )?(unrecognized|implemented)|bad sequence|line too long|message (size|too big|too large)|exceeds (the )?(maximum|size|message size)|size limit|\bTLS\b|STARTTLS|handshake|unexpected|protocol error|too many hops|mail loop|loops back', 'any', 'protocol_error', NULL),
    ('text.policy',              460, NULL, NULL, 'policy|prohibited|not allowed|administrative|access denied|refused|blocked|banned|not authori[sz]ed|denied', 'any', 'policy', NULL),

    -- RFC 3463 (and RFC 7372, RFC 7505) enhanced status codes
    ('status.bad_mailbox',       500, '[45]\.1\.[13]', NULL, NULL, 'any', 'bad_mailbox', 'X.1.1 bad destination mailbox address, X.1.3 bad destination address syntax'),
    ('status.bad_domain',        501, '[45]\.1\.(2|10)', NULL, NULL, 'any', 'bad_domain', 'X.1.2 bad destination system address, X.1.10 recipient address has null MX'),
    ('status.moved',             502, '[45]\.1\.6', NULL, NULL, 'any', 'mailbox_moved', 'X.1.6 destination mailbox has moved, no forwarding address'),
    ('status.sender',            503, '[45]\.1\.[78]', NULL, NULL, 'any', 'policy', 'X.1.7 bad sender mailbox syntax, X.1.8 bad sender system address'),
    ('status.disabled',          504, '5\.2\.1', NULL, NULL, 'any', 'inactive_mailbox', 'X.2.1 mailbox disabled, not accepting messages'),
    ('status.full',              505, '[45]\.2\.2', NULL, NULL, 'any', 'mailbox_full', 'X.2.2 mailbox full'),
    ('status.size',              506, '[45]\.(2\.3|3\.4)', NULL, NULL, 'any', 'protocol_error', 'X.2.3 and X.3.4 message too big'),
    ('status.routing_dns',       507, '5\.4\.4', NULL, NULL, 'any', 'bad_domain', 'X.4.4 unable to route: the domain has no mail host'),
    ('status.expired',           508, '[45]\.4\.7', NULL, NULL, 'any', 'message_expired', 'X.4.7 delivery time expired'),
    ('status.network',           509, '[45]\.4\.[0-9]+', NULL, NULL, 'any', 'routing', 'X.4.x network and routing status'),
    ('status.rate',              510, '[45]\.5\.3|4\.7\.28', NULL, NULL, 'any', 'rate_limited', 'X.5.3 too many recipients, X.7.28 mail flood'),
    ('status.protocol',          511, '[45]\.[356]\.[0-9]+', NULL, NULL, 'any', 'protocol_error', 'X.3.x mail system, X.5.x protocol, X.6.x content conversion'),
    ('status.account_disabled',  512, '5\.7\.13', NULL, NULL, 'any', 'inactive_mailbox', 'X.7.13 user account disabled'),
    ('status.authentication',    513, '[45]\.7\.(2[0-4]|2[6-7])', NULL, NULL, 'any', 'authentication', 'X.7.20-X.7.24, X.7.26, X.7.27: DKIM, SPF, DMARC'),
    ('status.security',          514, '[45]\.7\.[0-9]+', NULL, NULL, 'any', 'policy', 'X.7.x security or policy status'),
    ('status.greylist',          515, '4\.2\.0', NULL, NULL, 'any', 'greylisted', '4.2.0 on a deferral: greylisting (postgrey and others)')
) AS s (name, position, status_pattern, code_pattern, reply_pattern, stage, category, note);
