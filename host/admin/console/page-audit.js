import { pageHeading } from './ui.js';
export default { title: 'audit', render(root) { root.append(pageHeading('audit')); } };
