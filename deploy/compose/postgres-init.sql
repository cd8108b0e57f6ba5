-- One database per service: each keeps its state and its event ledger apart from the others.
CREATE DATABASE crm_gateway;
CREATE DATABASE crm_profile;
CREATE DATABASE crm_recsys;
CREATE DATABASE crm_sentiment;
CREATE DATABASE crm_churn;
CREATE DATABASE crm_support;
